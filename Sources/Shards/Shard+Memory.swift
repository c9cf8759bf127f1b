// Giving memory back while a shard is quiet: the receive buffers' pages, idle connections' send
// buffers and TLS record buffers, and the allocator's cache.

import Broker
import CApusSys
import IOUring

extension Shard {
    /// After a quiet second, gives the receive buffers' pages back. Only with DEFER_TASKRUN, where
    /// the kernel writes into buffers only inside this thread's io_uring_enter and posts the
    /// completion as it does, and only with the completion queue empty: then every buffer written
    /// has been read (a submit since the last harvest that completed a recv inline shows as a
    /// ready completion, and the pages stay).
    func releaseReceivePagesIfQuiet() {
        let released = releaseIdleWireBuffers()
        if ring.setup.defersTaskRun && receives &- receivesAtLastCheck < Shard.quietReceivesPerSecond
            && ring.readyCompletions == 0 {
            buffers.releasePages()
        }
        if receives &- receivesAtLastCheck < Shard.quietReceivesPerSecond && (released > 0 || receives != receivesAtQuietPurge) {
            // Quiet: what the connections gave back (wire buffers, TLS record buffers, what a
            // burst freed) goes back to the kernel, once per quiet spell and after each release.
            _ = apus_allocator_purge_thread()
            receivesAtQuietPurge = receives
        }
        receivesAtLastCheck = receives
    }

    /// Gives back the send buffers of connections whose core queue went idle (a quiet second with
    /// nothing to send: `ShardCore.tick` freed its buffer), so idle connections hold no memory
    /// beyond their slots.
    /// Returns how many connections gave buffers back.
    @discardableResult
    func releaseIdleWireBuffers() -> Int {
        var released = 0
        for slot in sockets.indices where (sockets[slot].wire.capacity != 0 || sockets[slot].tls?.holdsBuffers == true)
            && sockets[slot].wire.isEmpty && !sockets[slot].sendInFlight && sockets[slot].fd >= 0 {
            if core.outboundReleased(ConnectionID(slot: Int32(slot), generation: sockets[slot].generation)) {
                sockets[slot].wire.deallocate()
                if sockets[slot].gather?.isActive == false { sockets[slot].gather = nil }  // its iovecs (1 KiB)
                released += 1
                // A quiet TLS connection gives back OpenSSL's record buffers too (about 34 KiB;
                // a busy one keeps them, so records are not malloc'd per read).
                if let tls = sockets[slot].tls, sockets[slot].transportOut.isEmpty {
                    tls.releaseBuffers()
                    sockets[slot].transportOut.deallocate()
                }
            }
        }
        return released
    }
}
