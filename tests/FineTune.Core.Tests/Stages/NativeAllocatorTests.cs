using FineTune.Core;

namespace FineTune.Core.Tests.Stages;

public sealed class NativeAllocatorTests
{
    private const string Debian = "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2";

    private static bool OnlyDebianJemalloc(string path) => path == Debian;

    private static bool Nothing(string path) => false;

    [Fact]
    public void Jemalloc_is_preloaded_where_installed_when_the_user_asks_for_it()
    {
        Assert.Equal(Debian, NativeAllocator.PreloadFor("jemalloc", null, isLinux: true, OnlyDebianJemalloc));
        Assert.Equal(Debian, NativeAllocator.PreloadFor(" JEMALLOC ", "", isLinux: true, OnlyDebianJemalloc));
        Assert.Equal(Debian, NativeAllocator.PreloadFor("jemalloc", "/opt/hook.so", isLinux: true, OnlyDebianJemalloc));
        Assert.Null(NativeAllocator.PreloadFor(null, null, isLinux: true, OnlyDebianJemalloc));
        Assert.Null(NativeAllocator.PreloadFor("system", null, isLinux: true, OnlyDebianJemalloc));
    }

    [Fact]
    public void Nothing_is_preloaded_without_jemalloc_off_linux_or_when_an_allocator_is_already_preloaded()
    {
        Assert.Null(NativeAllocator.PreloadFor("jemalloc", null, isLinux: true, Nothing));
        Assert.Null(NativeAllocator.PreloadFor("jemalloc", null, isLinux: false, OnlyDebianJemalloc));
        // The second start sees its own LD_PRELOAD and runs as is: no loop.
        Assert.Null(NativeAllocator.PreloadFor("jemalloc", Debian, isLinux: true, OnlyDebianJemalloc));
        Assert.Null(NativeAllocator.PreloadFor("jemalloc", "/usr/lib/libmimalloc.so.2", isLinux: true,
            OnlyDebianJemalloc));
    }

    [Fact]
    public void Preload_goes_in_front_of_what_ld_preload_held()
    {
        Assert.Equal(Debian, NativeAllocator.WithPreload(Debian, null));
        Assert.Equal(Debian + ":/opt/hook.so", NativeAllocator.WithPreload(Debian, "/opt/hook.so"));
    }

    [Fact]
    public void The_allocator_in_use_is_read_from_the_memory_maps()
    {
        const string glibc = "7f00-7f01 r-xp 00000000 08:01 12 /usr/lib/x86_64-linux-gnu/libc.so.6\n";
        const string jemalloc = glibc + "7f02-7f03 r-xp 00000000 08:01 13 " + Debian + "\n";
        Assert.Equal("glibc malloc", NativeAllocator.InUse(glibc));
        Assert.Equal("jemalloc", NativeAllocator.InUse(jemalloc));
    }
}
