using FineTune.Core;

namespace FineTune.Core.Tests.Stages;

public sealed class NativeAllocatorTests
{
    private const string Debian = "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2";
    private const string JemallocConf = "dirty_decay_ms:-1,muzzy_decay_ms:-1,thp:always";
    private const string GlibcTunables = "glibc.malloc.hugetlb=1:glibc.malloc.mmap_threshold=33554432"
        + ":glibc.malloc.trim_threshold=4294967296:glibc.malloc.top_pad=268435456";

    private static bool OnlyDebianJemalloc(string path) => path == Debian;

    private static bool Nothing(string path) => false;

    private static Func<string, string?> Env(params (string Key, string Value)[] variables) =>
        key => variables.Where(v => v.Key == key).Select(v => v.Value).FirstOrDefault();

    [Theory]
    [InlineData(null)]
    [InlineData("auto")]
    [InlineData(" JEMALLOC ")]
    public void Jemalloc_is_preloaded_with_its_pages_kept_where_installed(string? setting)
    {
        var wanted = NativeAllocator.EnvironmentFor(setting, Env(), isLinux: true, OnlyDebianJemalloc)!;
        Assert.Equal(Debian, wanted["LD_PRELOAD"]);
        Assert.Equal(JemallocConf, wanted["MALLOC_CONF"]);
        Assert.False(wanted.ContainsKey("GLIBC_TUNABLES"));
    }

    [Theory]
    [InlineData(null, true)]      // auto without jemalloc installed
    [InlineData("jemalloc", true)] // asked for, not installed
    [InlineData("glibc", false)]  // asked for, though jemalloc is installed
    public void Glibc_gets_its_tunables_where_jemalloc_is_not_used(string? setting, bool noJemalloc)
    {
        var wanted = NativeAllocator.EnvironmentFor(setting, Env(), isLinux: true,
            noJemalloc ? Nothing : OnlyDebianJemalloc)!;
        Assert.Equal(GlibcTunables, Assert.Single(wanted).Value);
        Assert.Equal("GLIBC_TUNABLES", wanted.Keys.Single());
    }

    [Fact]
    public void The_users_own_values_come_after_ours_and_so_win()
    {
        var jemalloc = NativeAllocator.EnvironmentFor(null, Env(("LD_PRELOAD", "/opt/hook.so"),
            ("MALLOC_CONF", "narenas:2")), isLinux: true, OnlyDebianJemalloc)!;
        Assert.Equal(Debian + ":/opt/hook.so", jemalloc["LD_PRELOAD"]);
        Assert.Equal(JemallocConf + ",narenas:2", jemalloc["MALLOC_CONF"]);

        var glibc = NativeAllocator.EnvironmentFor("glibc", Env(("GLIBC_TUNABLES", "glibc.malloc.hugetlb=0")),
            isLinux: true, OnlyDebianJemalloc)!;
        Assert.Equal(GlibcTunables + ":glibc.malloc.hugetlb=0", glibc["GLIBC_TUNABLES"]);

        // The user preloaded jemalloc themselves: only its settings are added.
        var preloaded = NativeAllocator.EnvironmentFor(null, Env(("LD_PRELOAD", "/opt/libjemalloc.so")),
            isLinux: true, OnlyDebianJemalloc)!;
        Assert.Equal(JemallocConf, Assert.Single(preloaded).Value);
    }

    [Fact]
    public void The_second_start_and_other_choices_start_nothing()
    {
        // The environment the first start asked for: no loop.
        Assert.Null(NativeAllocator.EnvironmentFor(null, Env(("LD_PRELOAD", Debian), ("MALLOC_CONF", JemallocConf)),
            isLinux: true, OnlyDebianJemalloc));
        Assert.Null(NativeAllocator.EnvironmentFor(null, Env(("GLIBC_TUNABLES", GlibcTunables)), isLinux: true,
            Nothing));
        Assert.Null(NativeAllocator.EnvironmentFor(null, Env(("LD_PRELOAD", Debian),
            ("MALLOC_CONF", JemallocConf + ",narenas:2")), isLinux: true, OnlyDebianJemalloc));
        Assert.Null(NativeAllocator.EnvironmentFor("system", Env(), isLinux: true, OnlyDebianJemalloc));
        Assert.Null(NativeAllocator.EnvironmentFor(null, Env(), isLinux: false, OnlyDebianJemalloc));
        Assert.Null(NativeAllocator.EnvironmentFor(null, Env(("LD_PRELOAD", "/usr/lib/libmimalloc.so.2")),
            isLinux: true, OnlyDebianJemalloc));
    }

    [Fact]
    public void The_allocator_in_use_is_read_from_the_memory_maps_and_its_settings()
    {
        const string glibc = "7f00-7f01 r-xp 00000000 08:01 12 /usr/lib/x86_64-linux-gnu/libc.so.6\n";
        const string jemalloc = glibc + "7f02-7f03 r-xp 00000000 08:01 13 " + Debian + "\n";
        Assert.Equal("glibc malloc", NativeAllocator.InUse(glibc, Env()));
        Assert.Equal("glibc malloc (pages kept, huge pages)",
            NativeAllocator.InUse(glibc, Env(("GLIBC_TUNABLES", GlibcTunables))));
        Assert.Equal("jemalloc", NativeAllocator.InUse(jemalloc, Env()));
        Assert.Equal("jemalloc (pages kept, huge pages)",
            NativeAllocator.InUse(jemalloc, Env(("MALLOC_CONF", JemallocConf))));
    }
}
