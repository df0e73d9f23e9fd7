// One test class at a time. TorchSharp 0.107 passes a temporary Scalar's handle to native code without keeping the
// Scalar alive (Tensor.add(Tensor) makes its alpha = 1 that way), so a garbage collection caused by another thread can
// finalize it mid-call: a CI run failed in a residual add with "Expected false to be true ... toFloat". Test classes
// running side by side made such collections frequent. This lowers the odds without removing them (any thread that
// allocates can start a collection); on 2 cores, where each op already uses both, it costs little time.
[assembly: CollectionBehavior(DisableTestParallelization = true)]
