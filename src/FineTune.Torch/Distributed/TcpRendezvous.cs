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
    /// Blocking calls with deadlines throughout: the exchange runs once, before training, on the caller's thread.
    /// </summary>
    public static byte[] Share(byte[]? payload, int rank, int worldSize, string host, int port, TimeSpan timeout)
    {
        var deadline = Stopwatch.StartNew();
        try
        {
            return rank == 0
                ? Send(payload ?? throw new ArgumentNullException(nameof(payload)), worldSize, port, timeout, deadline)
                : Receive(rank, worldSize, host, port, timeout, deadline);
        }
        catch (TimeoutException)
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

    /// <summary>What is left of <paramref name="timeout"/>; a TimeoutException once nothing is.</summary>
    private static TimeSpan Remaining(TimeSpan timeout, Stopwatch deadline)
    {
        var left = timeout - deadline.Elapsed;
        return left > TimeSpan.Zero ? left : throw new TimeoutException();
    }

    private static byte[] Send(byte[] payload, int worldSize, int port, TimeSpan timeout, Stopwatch deadline)
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
                var left = Remaining(timeout, deadline);
                if (!listener.Server.Poll((int)Math.Min(left.TotalMicroseconds, 100_000), SelectMode.SelectRead))
                    continue;
                using var client = listener.AcceptTcpClient();
                client.ReceiveTimeout = client.SendTimeout = (int)Math.Max(1, left.TotalMilliseconds);
                using var stream = client.GetStream();
                var hello = new byte[12];
                try { stream.ReadExactly(hello); }
                catch (IOException) { continue; } // a stray connection that closed or said nothing in time
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
                stream.Write(answer);
                served.Add(rank);
            }
            return payload;
        }
        finally { listener.Stop(); }
    }

    private static byte[] Receive(int rank, int worldSize, string host, int port, TimeSpan timeout,
        Stopwatch deadline)
    {
        while (true)
        {
            var left = Remaining(timeout, deadline);
            using var client = new TcpClient();
            try
            {
                if (!client.ConnectAsync(host, port).Wait(left)) throw new TimeoutException();
            }
            catch (AggregateException e) when (e.InnerException is SocketException)
            {
                // Rank 0 is not listening yet: ranks start in any order.
                Thread.Sleep(TimeSpan.FromMilliseconds(Math.Min(500, 20 + deadline.ElapsedMilliseconds / 10)));
                continue;
            }
            client.ReceiveTimeout = client.SendTimeout = (int)Math.Max(1, left.TotalMilliseconds);
            using var stream = client.GetStream();
            var hello = new byte[12];
            BinaryPrimitives.WriteUInt32BigEndian(hello, Magic);
            BinaryPrimitives.WriteInt32BigEndian(hello.AsSpan(4), rank);
            BinaryPrimitives.WriteInt32BigEndian(hello.AsSpan(8), worldSize);
            stream.Write(hello);
            var length = new byte[4];
            stream.ReadExactly(length);
            var size = BinaryPrimitives.ReadInt32BigEndian(length);
            if (size is < 0 or > MaxPayload)
                throw new FineTuneException(DiagnosticCodes.CollectiveFailed,
                    $"the NCCL id exchange on {host}:{port} answered with a payload of {size} bytes; that is not " +
                    "rank 0 of this launch", ExitCodes.StageFailed);
            var payload = new byte[size];
            stream.ReadExactly(payload);
            return payload;
        }
    }
}
