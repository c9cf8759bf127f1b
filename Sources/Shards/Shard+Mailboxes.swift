// Shard-to-shard traffic: moving the core's outbox records into the SPSC mailboxes (waking the
// target with MSG_RING only if it sleeps), and draining the mailboxes addressed to this shard.

import Broker
import Codec
import IOUring
@preconcurrency import Glibc

extension Shard {
    func inboundMailboxesHaveRecords() -> Bool {
        for from in 0..<group.meshSize where from != index {
            if group.mailbox(from: from, to: index).hasRecords { return true }
        }
        return false
    }

    func drainMailboxes() {
        for from in 0..<group.meshSize where from != index {
            let box = group.mailbox(from: from, to: index)
            var any = false
            while let record = box.nextRecord() {
                any = true
                core.receiveShardMessage(record)
            }
            if any { box.release() }
        }
    }

    /// Moves outbox records into the mailboxes; what does not fit stays queued for the next turn.
    func sendOutbox() {
        core.hasUrgentShardRecords = false
        for target in 0..<group.meshSize where target != index {
            if core.shardOutbox[target].isEmpty { continue }
            if group.mailbox(from: index, to: target).send(from: &core.shardOutbox[target]) { wake(target) }
        }
    }

    /// Wakes `target` through its ring if it announced it is about to sleep.
    @inline(__always)
    func wake(_ target: Int) {
        let signals = group.signals[target]
        if signals.sleeping.load(ordering: .sequentiallyConsistent),
           signals.sleeping.exchange(false, ordering: .sequentiallyConsistent) {
            ring.prepareMessage(toRing: signals.ringFD.load(ordering: .relaxed), result: UInt32(index),
                                userData: UserData.make(.wake), localUserData: UserData.make(.wakeSent))
        }
    }
}
