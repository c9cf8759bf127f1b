// Codec's API reads and writes `ByteBuffer`s (ApusBase): whoever uses the codec gets the buffer too.

@_exported import ApusBase
