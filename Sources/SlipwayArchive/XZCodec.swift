import CLzma
import Glibc
import SlipwaySystem

/// Fixed xz parameters: the archive bytes depend on them and on nothing else.
enum XZParameters {
    /// Each block is compressed (and later decompressed) independently, so a fixed block
    /// size makes the output the same on any core count and lets decoding run in parallel.
    static let blockSize: UInt64 = 16 << 20
    static let defaultPreset: UInt32 = 6
    static let bufferSize = 1 << 20
}

/// xz through liblzma's multi-threaded encoder: always the multi-threaded one, even with one
/// thread, because the single-threaded encoder writes different bytes.
final class XZCompressor: StreamCompressor {
    private let stream: UnsafeMutablePointer<lzma_stream>
    private let output: ArchiveOutputFile
    private let buffer: UnsafeMutableRawBufferPointer

    init(preset: UInt32, threads: Int, output: ArchiveOutputFile) throws {
        self.output = output
        stream = .allocate(capacity: 1)
        stream.initialize(to: lzma_stream())
        buffer = .allocate(byteCount: XZParameters.bufferSize, alignment: 16)
        var options = lzma_mt()
        options.threads = UInt32(max(1, threads))
        options.block_size = XZParameters.blockSize
        options.preset = preset
        options.check = LZMA_CHECK_CRC64
        let status = lzma_stream_encoder_mt(stream, &options)
        guard status == LZMA_OK else {
            stream.deallocate()
            buffer.deallocate()
            throw ArchiveError.lzma(operation: "start the xz encoder", code: status.rawValue)
        }
    }

    deinit {
        lzma_end(stream)
        stream.deallocate()
        buffer.deallocate()
    }

    func write(_ bytes: UnsafeRawBufferPointer) throws {
        guard bytes.count > 0 else { return }
        stream.pointee.next_in = bytes.baseAddress!.assumingMemoryBound(to: UInt8.self)
        stream.pointee.avail_in = bytes.count
        while stream.pointee.avail_in > 0 {
            try step(LZMA_RUN)
        }
    }

    func finish() throws {
        while try step(LZMA_FINISH) != LZMA_STREAM_END {}
    }

    @discardableResult
    private func step(_ action: lzma_action) throws -> lzma_ret {
        stream.pointee.next_out = buffer.baseAddress!.assumingMemoryBound(to: UInt8.self)
        stream.pointee.avail_out = buffer.count
        let status = lzma_code(stream, action)
        guard status == LZMA_OK || status == LZMA_STREAM_END else {
            throw ArchiveError.lzma(operation: "xz compression", code: status.rawValue)
        }
        let produced = buffer.count - stream.pointee.avail_out
        try output.write(UnsafeRawBufferPointer(rebasing: buffer[0..<produced]))
        return status
    }
}

/// xz through liblzma's multi-threaded decoder (libarchive's own xz reader uses one thread).
/// Accepts exactly one xz stream: anything after it is trailing garbage.
final class XZDecompressor: StreamDecompressor {
    private let stream: UnsafeMutablePointer<lzma_stream>
    private let input: ArchiveInputFile
    private let buffers = AlternatingBuffers(size: XZParameters.bufferSize)
    private var ended = false

    init(threads: Int, input: ArchiveInputFile) throws {
        self.input = input
        stream = .allocate(capacity: 1)
        stream.initialize(to: lzma_stream())
        var options = lzma_mt()
        options.threads = UInt32(max(1, threads))
        // Above this the decoder falls back to one thread instead of using more memory:
        // enough for two 16 MiB blocks in flight per thread.
        options.memlimit_threading = 160 << 20
        options.memlimit_stop = UInt64.max
        options.flags = 0  // one stream only; no concatenation, no padding
        let status = lzma_stream_decoder_mt(stream, &options)
        guard status == LZMA_OK else {
            stream.deallocate()
            throw ArchiveError.lzma(operation: "start the xz decoder", code: status.rawValue)
        }
    }

    deinit {
        lzma_end(stream)
        stream.deallocate()
    }

    func next() throws -> UnsafeRawBufferPointer? {
        if ended { return nil }
        let buffer = buffers.swap()
        stream.pointee.next_out = buffer.baseAddress!.assumingMemoryBound(to: UInt8.self)
        stream.pointee.avail_out = buffer.count
        while stream.pointee.avail_out == buffer.count {
            if stream.pointee.avail_in == 0, !input.atEnd {
                let chunk = try input.read()
                stream.pointee.next_in = chunk.baseAddress?.assumingMemoryBound(to: UInt8.self)
                stream.pointee.avail_in = chunk.count
            }
            let status = lzma_code(stream, input.atEnd && stream.pointee.avail_in == 0 ? LZMA_FINISH : LZMA_RUN)
            if status == LZMA_STREAM_END {
                ended = true
                if try stream.pointee.avail_in > 0 || input.read().count > 0 {
                    throw ArchiveError.trailingGarbage(archive: input.path)
                }
                break
            }
            if status == LZMA_BUF_ERROR { throw ArchiveError.truncated(archive: input.path) }
            guard status == LZMA_OK else {
                throw ArchiveError.lzma(operation: "xz decompression of \(input.path)", code: status.rawValue)
            }
        }
        let produced = buffer.count - stream.pointee.avail_out
        return produced == 0 && ended ? nil : UnsafeRawBufferPointer(rebasing: buffer[0..<produced])
    }
}
