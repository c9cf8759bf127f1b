// The core's API names connections (ConnectionID) and exchanges ShardContract's records: whoever
// drives the core gets the contract's types too.

@_exported import ShardContract
