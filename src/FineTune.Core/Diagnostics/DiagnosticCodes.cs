using System.Reflection;

namespace FineTune.Core.Diagnostics;

/// <summary>
/// Every diagnostic code the tool and its build integration report, grouped by the hundreds: 00xx command line,
/// 01xx pipeline file, 02xx data, 03xx fetch and download, 04xx tokenizer and chat templates, 05xx model, training
/// and the Hugging Face Hub, 06xx chat, score, generate, tokenize and export, 08xx build integration, 09xx runner,
/// 10xx the chat client, serve and diff, 11xx distributed training and external libtorch.
/// Codes are never renumbered: scripts, CI logs and issues refer to them.
/// </summary>
internal static class DiagnosticCodes
{
    // ---- 00xx command line --------------------------------------------------------------------------------------

    [Meaning("command-line arguments that the command does not accept")]
    public const string InvalidArguments = "FT0001";

    // ---- 01xx pipeline file -------------------------------------------------------------------------------------

    [Meaning("the pipeline file, or the base file that 'extends' names, does not exist")]
    public const string PipelineFileNotFound = "FT0100";

    [Meaning("not valid YAML, or YAML that pipeline files refuse (anchors, aliases, tags, complex keys, nesting " +
        "deeper than 16 levels, a second document)")]
    public const string PipelineSyntaxError = "FT0101";

    [Meaning("a key in the pipeline file that no setting has")]
    public const string UnknownKey = "FT0102";

    [Meaning("the same key twice in one mapping")]
    public const string DuplicateKey = "FT0103";

    [Meaning("a setting without a value, or with a value of the wrong type or shape")]
    public const string WrongValueType = "FT0104";

    [Meaning("a ${name} reference to a parameter that 'params' does not define")]
    public const string UnknownParameter = "FT0105";

    [Meaning("a --set argument not of the form stage.key=value")]
    public const string MalformedSetArgument = "FT0106";

    [Meaning("a number outside the range its setting allows")]
    public const string ValueOutOfRange = "FT0107";

    [Meaning("a value that is not one of the setting's allowed choices")]
    public const string ValueNotAllowed = "FT0108";

    [Meaning("a required setting, or the pipeline's name, is missing")]
    public const string MissingRequiredSetting = "FT0109";

    [Meaning("settings that are each valid but fail their stage's checks together (contradictions, empty entries)")]
    public const string InvalidStageSettings = "FT0110";

    [Meaning("'extends' leads back to a file already in the chain")]
    public const string ExtendsCycle = "FT0111";

    // ---- 02xx data ----------------------------------------------------------------------------------------------

    [Meaning("data records that cannot be read (malformed JSON or CSV)")]
    public const string MalformedDataFile = "FT0201";

    [Meaning("records of the wrong shape: not objects, a missing or mistyped field, a bad role, key, content, weight")]
    public const string InvalidRecord = "FT0202";

    [Meaning("the data holds no records, or the validation split leaves none for training")]
    public const string NoTrainingRecords = "FT0203";

    [Meaning("the fetch stage's output holds no data file")]
    public const string FetchOutputMissing = "FT0204";

    [Meaning("records that are empty or have no assistant message to learn from")]
    public const string NothingToLearn = "FT0206";

    [Meaning("warning: records that repeat an earlier record exactly")]
    public const string DuplicateRecord = "FT0210";

    [Meaning("warning: records with an empty assistant answer")]
    public const string EmptyAnswer = "FT0211";

    [Meaning("warning: records with a one-character assistant answer, or one without a letter or digit")]
    public const string ShortAnswer = "FT0212";

    [Meaning("warning: records whose assistant messages all have weight 0, so nothing in them is trained")]
    public const string NothingTrained = "FT0213";

    [Meaning("warning: records with tool or function calls, which the chat template does not render")]
    public const string DroppedToolCalls = "FT0214";

    // ---- 03xx fetch and download --------------------------------------------------------------------------------

    [Meaning("the local data file that fetch.path names does not exist")]
    public const string DataFileNotFound = "FT0301";

    [Meaning("data not pinned by sha256, or not matching the pin (also: 'cache add' given a missing file)")]
    public const string DataPinMismatch = "FT0302";

    [Meaning("a downloaded file's sha256 differs from the pinned one")]
    public const string DownloadHashMismatch = "FT0303";

    [Meaning("a download failed after its retries: the network or the server is unreachable")]
    public const string DownloadFailed = "FT0304";

    [Meaning("the server refused a download with an error status")]
    public const string DownloadRefused = "FT0305";

    [Meaning("offline, and the file to fetch is not in the download cache")]
    public const string NotInDownloadCache = "FT0306";

    [Meaning("a file could not be added to the download cache: it is missing or changed while being added")]
    public const string CacheAddFailed = "FT0307";

    [Meaning("the data file changed while it was being fetched")]
    public const string SourceChangedDuringFetch = "FT0308";

    // ---- 04xx tokenizer and chat templates ----------------------------------------------------------------------

    [Meaning("the tokenizer setting names no usable tokenizer: no such folder, no tokenizer.json, no such model id")]
    public const string TokenizerNotFound = "FT0401";

    [Meaning("tokenizer.json or tokenizer_config.json is unreadable, malformed, or uses a component not implemented")]
    public const string MalformedTokenizer = "FT0402";

    [Meaning("no training example is left after tokenizing: none of them fits max_length")]
    public const string NoExampleFitsMaxLength = "FT0404";

    [Meaning("no chat template: the tokenizer has none and none was given, or chat_template names no template or file")]
    public const string ChatTemplateNotFound = "FT0405";

    [Meaning("an assistant turn is not found in the text the chat template renders, so its trained tokens are unknown")]
    public const string AssistantTurnNotLocated = "FT0406";

    [Meaning("the tokenize stage's summary records no max_length")]
    public const string TokenizeSummaryIncomplete = "FT0407";

    [Meaning("a syntax error in a Jinja chat template")]
    public const string TemplateSyntaxError = "FT0410";

    [Meaning("the chat template called raise_exception; the message is its author's")]
    public const string TemplateRaisedException = "FT0411";

    [Meaning("a chat template failed while rendering: an unknown filter or test, or an operation that failed")]
    public const string TemplateRenderError = "FT0412";

    // ---- 05xx model, training and the Hugging Face Hub ----------------------------------------------------------

    [Meaning("device cuda was requested but libtorch sees no CUDA device")]
    public const string CudaUnavailable = "FT0501";

    [Meaning("a device other than auto, cpu or cuda")]
    public const string UnknownDevice = "FT0502";

    [Meaning("the train stage's input holds no training examples")]
    public const string NoTrainingExamples = "FT0503";

    [Meaning("the tokenizer has more tokens than the model to train embeds")]
    public const string TokenizerLargerThanModel = "FT0505";

    [Meaning("a weights file that is not valid safetensors")]
    public const string InvalidSafetensors = "FT0510";

    [Meaning("the model folder's config.json is missing or not a usable model config")]
    public const string InvalidModelConfig = "FT0520";

    [Meaning("the model folder has neither model.safetensors nor a shard index")]
    public const string ModelWeightsNotFound = "FT0521";

    [Meaning("the weights do not fit the model that config.json describes")]
    public const string WeightsDoNotFitConfig = "FT0522";

    [Meaning("a model type, architecture, activation or rope_scaling type that this decoder does not implement")]
    public const string UnsupportedArchitecture = "FT0523";

    [Meaning("the shard index is malformed or names shards that are missing")]
    public const string InvalidShardIndex = "FT0524";

    [Meaning("the model has only pickle weights (pytorch_model.bin), refused because loading them can run code")]
    public const string PickleWeightsRefused = "FT0525";

    [Meaning("the Hub refused access: the model is gated or private")]
    public const string HubAccessDenied = "FT0530";

    [Meaning("the Hub has no such model, revision or file")]
    public const string HubNotFound = "FT0531";

    [Meaning("offline, and the model is not (or only partly) in the Hugging Face cache")]
    public const string NotInHubCache = "FT0532";

    [Meaning("a file downloaded from the Hub has another size or sha256 than the Hub announced")]
    public const string HubDownloadCorrupted = "FT0534";

    [Meaning("not a Hugging Face model id, or not a revision")]
    public const string InvalidModelId = "FT0535";

    [Meaning("the Hub model has no config.json or safetensors weights to download")]
    public const string NoModelFilesOnHub = "FT0536";

    [Meaning("the endpoint does not answer like the Hugging Face Hub API (bad listing, no ETag, a redirect loop)")]
    public const string NotAHubEndpoint = "FT0537";

    [Meaning("the Hub answered with an unexpected error status")]
    public const string HubRequestFailed = "FT0539";

    [Meaning("an interrupted run's checkpoint has other settings; choose --restart or --resume-with-changes")]
    public const string CheckpointSettingsChanged = "FT0540";

    [Meaning("--resume-with-changes with a change that a running training cannot take")]
    public const string CheckpointCannotTakeChanges = "FT0541";

    [Meaning("invalid LoRA options: rank, dropout or target modules")]
    public const string InvalidLoraOptions = "FT0550";

    [Meaning("the adapter folder's adapter_config.json is missing or not a usable LoRA config")]
    public const string InvalidAdapterConfig = "FT0551";

    [Meaning("the adapter weights are missing or do not fit the model")]
    public const string AdapterWeightsMismatch = "FT0552";

    [Meaning("LoRA modules_to_save names an unknown module, or is set for a model with tied embeddings")]
    public const string ModulesToSaveRefused = "FT0553";

    // ---- 06xx chat, score, generate, tokenize and export --------------------------------------------------------

    [Meaning("the model folder or pipeline file given to chat does not exist")]
    public const string ChatTargetNotFound = "FT0601";

    [Meaning("the chat model folder lacks files that the export stage writes")]
    public const string ChatModelFilesMissing = "FT0602";

    [Meaning("the tokenizer has ids beyond the model's vocabulary: the two come from different models or runs")]
    public const string TokenizerModelMismatch = "FT0603";

    [Meaning("the pipeline's export stage has not run, or its output is no longer in the store")]
    public const string ExportNotAvailable = "FT0604";

    [Meaning("a tokenizer file the export stage copies is missing from the tokenize output")]
    public const string ExportTokenizerFileMissing = "FT0610";

    [Meaning("invalid or contradictory arguments to score or generate")]
    public const string InvalidModelCommandArguments = "FT0620";

    [Meaning("the model is neither an existing folder nor a Hugging Face model id")]
    public const string ModelNotFound = "FT0621";

    [Meaning("the model folder has no tokenizer.json, but text must be encoded")]
    public const string TokenizerRequired = "FT0622";

    [Meaning("the file to score does not exist")]
    public const string ScoreFileNotFound = "FT0623";

    [Meaning("the tokenize command's input file is missing, or a line of it is not a text or messages object")]
    public const string InvalidTokenizeInput = "FT0624";

    // ---- 0700-0719 evaluate and report ----------------------------------------------------------------------------

    [Meaning("the report command's pipeline has no evaluate output yet, or it is no longer in the store")]
    public const string ReportNotAvailable = "FT0700";

    // ---- 0720-0739 export formats: hf shards, PEFT adapter, GGUF, Ollama ------------------------------------------

    [Meaning("export.formats names a format other than hf, adapter, gguf and ollama")]
    public const string UnknownExportFormat = "FT0720";

    [Meaning("export.max_shard_size is not a size such as 5GB, 500MB or a number of bytes")]
    public const string InvalidShardSize = "FT0721";

    [Meaning("the adapter format was asked for, but train.method is not lora: a full fine-tune has no adapter")]
    public const string AdapterExportNeedsLora = "FT0722";

    [Meaning("the gguf or ollama format was asked for a model architecture the GGUF writer does not support")]
    public const string GgufUnsupportedArchitecture = "FT0723";

    [Meaning("the train output has no adapter folder for the adapter export (re-run train with method: lora)")]
    public const string ExportAdapterMissing = "FT0724";

    [Meaning("the tokenizer cannot be written into a GGUF file (only byte-level BPE tokenizers are supported)")]
    public const string GgufUnsupportedTokenizer = "FT0725";

    [Meaning("warning: the chat template has no Ollama equivalent; the Modelfile carries an editable ChatML fallback " +
        "(export.ollama_fallback: true)")]
    public const string OllamaTemplateFallback = "FT0726";

    [Meaning("the ollama format was asked for, but the chat template has no Ollama equivalent (drop ollama, or set " +
        "export.ollama_fallback: true for an editable ChatML TEMPLATE)")]
    public const string OllamaTemplateUnsupported = "FT0727";

    // ---- 08xx build integration ---------------------------------------------------------------------------------
    // FineTune.MSBuild reports these with its own literals: MSBuild loads the task without FineTune.Core.

    [Meaning("the build cannot find the FineTune tool (FineTuneToolPath, or 'dotnet tool restore')")]
    public const string ToolNotAvailable = "FT0801";

    [Meaning("the FineTune tool's version is not the one FineTune.MSBuild needs")]
    public const string ToolVersionMismatch = "FT0802";

    [Meaning("a FineTunePipeline item names a file that does not exist")]
    public const string PipelineItemNotFound = "FT0803";

    [Meaning("the FineTune tool succeeded but its --json result cannot be read")]
    public const string ToolResultUnreadable = "FT0804";

    // ---- 09xx runner --------------------------------------------------------------------------------------------

    [Meaning("a stage failed while running (an unexpected error inside it; --verbose shows where)")]
    public const string StageFailed = "FT0900";

    [Meaning("another run is using the stage store, and --no-wait was given")]
    public const string StoreInUse = "FT0901";

    [Meaning("--only names a stage whose inputs are not up to date")]
    public const string OnlyStageNotUpToDate = "FT0902";

    [Meaning("--until, --only or --force names no stage of the pipeline")]
    public const string UnknownStage = "FT0903";

    [Meaning("the target of 'cache gc' is neither a pipeline file nor a folder")]
    public const string NotAPipelineOrFolder = "FT0904";

    [Meaning("--restart and --resume-with-changes given together")]
    public const string ConflictingCheckpointOptions = "FT0905";

    [Meaning("the store folder already holds files but no .finetune-store marker, so the tool will not delete there")]
    public const string NotAStore = "FT0910";

    [Meaning("'cache gc' found a lock file it cannot read, so it cannot tell which entries are still used")]
    public const string UnreadableLockFile = "FT0911";

    [Meaning("a store entry whose files no longer match what was committed (cache verify); it is moved aside")]
    public const string DamagedStoreEntry = "FT0912";

    [Meaning("training produced a loss or gradient norm that is NaN or infinite; nothing was committed")]
    public const string TrainingDiverged = "FT0913";

    [Meaning("the checkpoint of an interrupted training cannot be read; --restart discards it")]
    public const string CorruptCheckpoint = "FT0914";

    [Meaning("a lock file with YAML anchors or aliases, or nested deeper than the tool ever writes")]
    public const string LockFileStructureRefused = "FT0915";

    [Meaning("the disk (or the user's quota) was full while writing; nothing incomplete was committed")]
    public const string DiskFull = "FT0916";

    [Meaning("a tokens file (the tokenize stage's output) whose header does not match its contents or length")]
    public const string InvalidTokensFile = "FT0925";

    // ---- 10xx inference: the chat client, serve, diff -------------------------------------------------------------

    [Meaning("--adapter names a folder that does not exist")]
    public const string AdapterFolderNotFound = "FT1000";

    [Meaning("an adapter folder given as the model names no base model (base_model_name_or_path)")]
    public const string AdapterBaseModelUnknown = "FT1001";

    [Meaning("serve options out of range (--port, --queue, --host)")]
    public const string InvalidServeOptions = "FT1002";

    [Meaning("serve could not listen on the address (the port is taken, or the address is not this machine's)")]
    public const string ServeAddressUnavailable = "FT1003";

    [Meaning("diff: a lock file that does not exist, is not a lock file, or that git cannot show at the revision")]
    public const string DiffLockFileNotFound = "FT1010";

    // ---- 11xx distributed training ------------------------------------------------------------------------------

    [Meaning("the library of a distributed backend (Open MPI's libmpi, NCCL's libnccl) cannot be loaded")]
    public const string DistributedLibraryMissing = "FT1100";

    [Meaning("a launcher's variables (mpirun, srun, torchrun) that are malformed or disagree with the backend's world")]
    public const string LauncherMismatch = "FT1101";

    [Meaning("a collective operation (all-reduce, broadcast, barrier) got no answer from every rank within the " +
        "timeout: a rank died, was stopped or hangs")]
    public const string CollectiveTimedOut = "FT1102";

    [Meaning("a distributed backend call failed")]
    public const string CollectiveFailed = "FT1103";

    [Meaning("the ranks of a data-parallel run do not start from identical weights and position")]
    public const string RanksDiverged = "FT1104";

    [Meaning("an external libtorch (FINETUNE_LIBTORCH) that is not a libtorch folder, or lacks symbols that " +
        "TorchSharp's shim imports")]
    public const string ExternalLibTorchMismatch = "FT1105";

    [Meaning("a job file that 'launch' cannot write (contradictory options, or a pipeline that is not " +
        "distributed)")]
    public const string LaunchOptionsInvalid = "FT1106";

    /// <summary>Every code, sorted by code.</summary>
    public static IReadOnlyList<DiagnosticCode> All { get; } =
        typeof(DiagnosticCodes).GetFields(BindingFlags.Public | BindingFlags.Static)
            .Where(field => field.IsLiteral && field.FieldType == typeof(string))
            .Select(field => new DiagnosticCode(
                (string)field.GetRawConstantValue()!,
                field.Name,
                field.GetCustomAttribute<MeaningAttribute>()?.Text
                    ?? throw new InvalidOperationException($"DiagnosticCodes.{field.Name} has no [Meaning]")))
            .OrderBy(code => code.Code, StringComparer.Ordinal)
            .ToList();
}
