namespace FineTune.MSBuild.Tests;

/// <summary>
/// Every local file a run read is an input of the build: a .jinja chat template and a local model folder's files
/// included, so editing either re-runs the pipeline on the next <c>dotnet build</c>.
/// </summary>
public class LocalInputsTests
{
    private const string ChatTemplate = """
        {% for message in messages %}<|im_start|>{{ message.role }}
        {{ message.content }}<|im_end|>
        {% endfor %}{% if add_generation_prompt %}<|im_start|>assistant
        {% endif %}
        """;

    [Fact]
    public async Task Editing_a_local_chat_template_or_model_folder_reruns_the_build()
    {
        using var project = new SampleProject();
        project.WriteFixture("data.json", "pipelines/data.json");
        // A model folder to fine-tune: the export of a tiny pipeline, run by the CLI itself and copied beside the pipeline.
        project.WriteFixture("tiny.yaml", "pipelines/base.yaml");
        var exported = await SampleProject.Dotnet(project.Folder, [SampleProject.CliDll, "run", "pipelines/base.yaml"]);
        Assert.True(exported.ExitCode == 0, exported.ToString());
        var exportLine = exported.Output.Split('\n').Single(l => l.StartsWith("Model: ", StringComparison.Ordinal));
        var exportFolder = Path.GetFullPath(exportLine["Model: ".Length..].Trim(), project.Folder);
        Directory.CreateDirectory(project.PathOf("pipelines/model"));
        foreach (var file in Directory.GetFiles(exportFolder)) File.Copy(file, project.PathOf("pipelines/model/" + Path.GetFileName(file)));

        project.Write("pipelines/chat.jinja", ChatTemplate);
        project.Write("pipelines/tuned.yaml", """
            name: tuned
            stages:
              fetch: { path: data.json }
              format: { validation: 2 }
              tokenize: { tokenizer: model, chat_template: chat.jinja, max_length: 48 }
              train: { model: model, epochs: 1, batch_size: 4, gradient_accumulation: 1, learning_rate: 1e-3 }
              evaluate: { max_new_tokens: 2 }
            """);
        project.WriteProject("""<FineTunePipeline Include="pipelines/tuned.yaml" />""");

        var first = await project.Build();
        Assert.True(first.ExitCode == 0, first.ToString());
        Assert.True(first.RanPipeline, first.ToString());
        var inputs = File.ReadAllLines(Directory.GetFiles(project.PathOf("obj"), "*.inputs", SearchOption.AllDirectories).Single());
        Assert.Contains(project.PathOf("pipelines/chat.jinja"), inputs);
        Assert.Contains(project.PathOf("pipelines/model/config.json"), inputs);
        Assert.Contains(project.PathOf("pipelines/model/model.safetensors"), inputs);
        Assert.Contains(project.PathOf("pipelines/model/tokenizer.json"), inputs);

        var unchanged = await project.Build();
        Assert.False(unchanged.RanPipeline, unchanged.ToString());

        // The template's text changes (a comment): tokenize runs (the template travels in the tokenizer it writes).
        project.Write("pipelines/chat.jinja", "{# edited #}" + ChatTemplate);
        var templateEdited = await project.Build();
        Assert.True(templateEdited.ExitCode == 0, templateEdited.ToString());
        Assert.True(templateEdited.RanPipeline, templateEdited.ToString());
        Assert.True(templateEdited.StageRan("tokenize"), templateEdited.ToString());
        Assert.True(templateEdited.StageUpToDate("format"), templateEdited.ToString());

        // The model's weights rewritten with other bytes: train runs on them.
        var weights = project.PathOf("pipelines/model/model.safetensors");
        var bytes = File.ReadAllBytes(weights);
        bytes[^1] ^= 0x01; // the last byte of the last tensor: still a valid file, a slightly different weight
        File.WriteAllBytes(weights, bytes);
        var modelEdited = await project.Build();
        Assert.True(modelEdited.ExitCode == 0, modelEdited.ToString());
        Assert.True(modelEdited.RanPipeline, modelEdited.ToString());
        Assert.True(modelEdited.StageUpToDate("tokenize"), modelEdited.ToString());
        Assert.True(modelEdited.StageRan("train"), modelEdited.ToString());
    }
}
