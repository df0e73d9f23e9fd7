using System.Security.Cryptography;
using FineTune.Core.Caching;
using FineTune.TestKit;

namespace FineTune.Core.Tests.Caching;

public sealed class FileHashCacheTests : IDisposable
{
    private static readonly DateTime LongAgo = new(2024, 1, 2, 3, 4, 5, DateTimeKind.Utc);
    private readonly TempFolder _temp = new();

    private string CachePath => Path.Combine(_temp.Path, "cache", FileHashCache.FileName);

    // Every size is remembered here; the real default leaves files under 1 MiB to be hashed each time.
    private FileHashCache NewCache() => new(CachePath) { MinimumSize = 0 };

    private string WriteWeights(byte fill, DateTime modified, int size = 4096)
    {
        var path = Path.Combine(_temp.Path, "model", "model.safetensors");
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        File.WriteAllBytes(path, Enumerable.Repeat(fill, size).ToArray());
        File.SetLastWriteTimeUtc(path, modified);
        return path;
    }

    private static string Sha256(string path) => Convert.ToHexStringLower(SHA256.HashData(File.ReadAllBytes(path)));

    [Fact]
    public void A_file_is_read_once_and_a_later_run_takes_its_hash_from_the_cache_file()
    {
        var weights = WriteWeights(1, LongAgo);
        var first = NewCache();
        Assert.Equal(Sha256(weights), first.HashOf(weights));
        Assert.Equal(1, first.FilesHashed);
        Assert.True(File.Exists(CachePath));

        var nextRun = NewCache();
        Assert.Equal(Sha256(weights), nextRun.HashOf(weights));
        Assert.Equal(0, nextRun.FilesHashed);
    }

    [Fact]
    public void Content_changed_behind_a_restored_size_and_time_is_not_seen_the_documented_trade_off()
    {
        var weights = WriteWeights(1, LongAgo);
        var before = NewCache().HashOf(weights);

        WriteWeights(2, LongAgo); // same size, time put back: as git and DVC, the cache cannot tell
        var cache = NewCache();
        Assert.Equal(before, cache.HashOf(weights));
        Assert.Equal(0, cache.FilesHashed);
        Assert.NotEqual(before, Sha256(weights));
    }

    [Fact]
    public void A_touched_or_resized_file_is_hashed_again()
    {
        var weights = WriteWeights(1, LongAgo);
        NewCache().HashOf(weights);

        File.SetLastWriteTimeUtc(weights, LongAgo.AddSeconds(1));
        var touched = NewCache();
        Assert.Equal(Sha256(weights), touched.HashOf(weights));
        Assert.Equal(1, touched.FilesHashed);

        WriteWeights(3, LongAgo.AddSeconds(1), size: 4097);
        var resized = NewCache();
        Assert.Equal(Sha256(weights), resized.HashOf(weights));
        Assert.Equal(1, resized.FilesHashed);
    }

    [Fact]
    public void A_file_modified_just_now_is_hashed_every_time()
    {
        var weights = WriteWeights(1, DateTime.UtcNow);
        var cache = NewCache();
        cache.HashOf(weights);
        cache.HashOf(weights);
        Assert.Equal(2, cache.FilesHashed);
    }

    [Fact]
    public void Small_files_and_a_damaged_cache_file_are_simply_hashed()
    {
        var weights = WriteWeights(1, LongAgo);
        var small = new FileHashCache(CachePath) { MinimumSize = 1 << 20 };
        small.HashOf(weights);
        small.HashOf(weights);
        Assert.Equal(2, small.FilesHashed);
        Assert.False(File.Exists(CachePath));

        Directory.CreateDirectory(Path.GetDirectoryName(CachePath)!);
        File.WriteAllText(CachePath, "{ not json");
        var damaged = NewCache();
        Assert.Equal(Sha256(weights), damaged.HashOf(weights));
        Assert.Equal(Sha256(weights), NewCache().HashOf(weights)); // and the file is whole again
        Assert.Equal(1, damaged.FilesHashed);
    }

    public void Dispose() => _temp.Dispose();
}
