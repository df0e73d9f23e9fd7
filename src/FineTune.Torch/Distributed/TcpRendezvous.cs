using System.Buffers.Binary;
using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using FineTune.Core.Diagnostics;

namespace FineTune.Torch.Distributed;

/// <summary>
/// Hands a small payload from rank 0 to every other rank over TCP: NCCL's unique id, which must reach each rank
/// before any NCCL call, where no MPI runs (torchrun). Rank 0 listens on the port; the others connect (retrying
/// until rank 0 listens), say who they are, and read the payload. Every step is bounded by the collective timeout.
/// </summary>
internal static class TcpRendezvous
{
    // "FTRV": a stray connection (a port scanner, another job) is refused rather than sent the payload.
    private const uint Magic = 0x46545256;
    private const int MaxPayload = 1 << 16;

    /// <summary>
    /// Rank 0 passes the payload and gets it back once every other rank has it; the others pass null and get it.
    /// </summary>
    public static byte[] Share(byte[]? payload, int rank, int worldSize, string host, int port, TimeSpan timeout)
    {
        using var deadline = new CancellationTokenSource(timeout);
        try
        {
            return rank == 0
                ? Send(payload ?? throw new ArgumentNullException(nameof(payload)), worldSize, port, deadline.Token)
                : Receive(rank, worldSize, host, port, deadline.Token);
        }
        catch (OperationCanceledException)
        {
            throw new FineTuneException(DiagnosticCodes.CollectiveTimedOut,
                $"rank {rank} of {worldSize}: the NCCL id exchange on {host}:{port} did not complete within " +
                $"{timeout.TotalSeconds:0.#} s; " + (rank == 0
                    ? "not every rank connected (a rank died, or cannot reach this host on that port)"
                    : "rank 0 never answered (it died, or MASTER_ADDR does not name its host)") +
                ". FINETUNE_COLLECTIVE_TIMEOUT (seconds) sets the limit", ExitCodes.StageFailed);
        }
        catch (Exception e) when (e is IOException or SocketException)
        {
            throw new FineTuneException(DiagnosticCodes.CollectiveFailed,
                $"rank {rank} of {worldSize}: the NCCL id exchange on {host}:{port} broke off ({e.Message})",
                ExitCodes.StageFailed);
        }
    }

    private static byte[] Send(byte[] payload, int worldSize, int port, CancellationToken cancellationToken)
    {
        var listener = new TcpListener(IPAddress.Any, port);
        try { listener.Start(); }
        catch (SocketException e)
        {
            throw new FineTuneException(DiagnosticCodes.CollectiveFailed,
                $"rank 0 cannot listen on port {port} for the NCCL id exchange ({e.SocketErrorCode}): the port is " +
                "taken; it is MASTER_PORT + 1, so choose another MASTER_PORT", ExitCodes.StageFailed);
        }
        try
        {
            var served = new HashSet<int>();
            while (served.Count < worldSize - 1)
            {
                using var client = listener.AcceptTcpClientAsync(cancellationToken).AsTask()
                    .GetAwaiter().GetResult();
                using var stream = client.GetStream();
                var hello = new byte[12];
                try { stream.ReadExactlyAsync(hello, cancellationToken).AsTask().GetAwaiter().GetResult(); }
                catch (EndOfStreamException) { continue; }
                catch (IOException) { continue; }
                if (BinaryPrimitives.ReadUInt32BigEndian(hello) != Magic) continue;
                var rank = BinaryPrimitives.ReadInt32BigEndian(hello.AsSpan(4));
                var size = BinaryPrimitives.ReadInt32BigEndian(hello.AsSpan(8));
                if (size != worldSize || rank <= 0 || rank >= worldSize)
                    throw new FineTuneException(DiagnosticCodes.LauncherMismatch,
                        $"the NCCL id exchange on port {port}: a process says it is rank {rank} of {size}, but this " +
                        $"launch has {worldSize} ranks; is another job using the same MASTER_PORT?",
                        ExitCodes.StageFailed);
                var answer = new byte[4 + payload.Length];
                BinaryPrimitives.WriteInt32BigEndian(answer, payload.Length);
                payload.CopyTo(answer, 4);
                stream.WriteAsync(answer, cancellationToken).AsTask().GetAwaiter().GetResult();
                served.Add(rank);
            }
            return payload;
        }
        finally { listener.Stop(); }
    }

    private static byte[] Receive(int rank, int worldSize, string host, int port, CancellationToken cancellationToken)
    {
        var retry = Stopwatch.StartNew();
        while (true)
        {
            cancellationToken.ThrowIfCancellationRequested();
            using var client = new TcpClient();
            try
            {
                client.ConnectAsync(host, port, cancellationToken).AsTask().GetAwaiter().GetResult();
            }
            catch (SocketException)
            {
                // Rank 0 is not listening yet: ranks start in any order.
                Task.Delay(TimeSpan.FromMilliseconds(Math.Min(500, 20 + retry.ElapsedMilliseconds / 10)),
                    cancellationToken).GetAwaiter().GetResult();
                continue;
            }
            using var stream = client.GetStream();
            var hello = new byte[12];
            BinaryPrimitives.WriteUInt32BigEndian(hello, Magic);
            BinaryPrimitives.WriteInt32BigEndian(hello.AsSpan(4), rank);
            BinaryPrimitives.WriteInt32BigEndian(hello.AsSpan(8), worldSize);
            stream.WriteAsync(hello, cancellationToken).AsTask().GetAwaiter().GetResult();
            var length = new byte[4];
            stream.ReadExactlyAsync(length, cancellationToken).AsTask().GetAwaiter().GetResult();
            var size = BinaryPrimitives.ReadInt32BigEndian(length);
            if (size is < 0 or > MaxPayload)
                throw new FineTuneException(DiagnosticCodes.CollectiveFailed,
                    $"the NCCL id exchange on {host}:{port} answered with a payload of {size} bytes; that is not " +
                    "rank 0 of this launch", ExitCodes.StageFailed);
            var payload = new byte[size];
            stream.ReadExactlyAsync(payload, cancellationToken).AsTask().GetAwaiter().GetResult();
            return payload;
        }
    }
}
