import CZstd
import Foundation
import Glibc
import SlipwaySystem

/// zstd through libzstd, always with worker threads (the output is the same for any
/// worker count of one or more) and a content checksum.
final class ZstdCompressor: StreamCompressor {
    static let defaultLevel = 9
    private let context: OpaquePointer
    private let output: ArchiveOutputFile
    private let buffer: UnsafeMutableRawBufferPointer

    init(level: Int, threads: Int, output: ArchiveOutputFile) throws {
        guard let context = ZSTD_createCCtx() else { throw ArchiveError.zstd(operation: "start the zstd encoder", message: "out of memory") }
        self.context = context
        self.output = output
        buffer = .allocate(byteCount: ZSTD_CStreamOutSize(), alignment: 16)
        for (parameter, value) in [(ZSTD_c_compressionLevel, level), (ZSTD_c_checksumFlag, 1), (ZSTD_c_nbWorkers, max(1, threads))] {
            let result = ZSTD_CCtx_setParameter(context, parameter, Int32(value))
            if ZSTD_isError(result) != 0 {
                throw ArchiveError.zstd(operation: "configure the zstd encoder", message: String(cString: ZSTD_getErrorName(result)))
            }
        }
    }

    deinit {
        ZSTD_freeCCtx(context)
        buffer.deallocate()
    }

    func write(_ bytes: UnsafeRawBufferPointer) throws {
        var input = ZSTD_inBuffer(src: bytes.baseAddress, size: bytes.count, pos: 0)
        while input.pos < input.size {
            _ = try step(&input, ZSTD_e_continue)
        }
    }

    func finish() throws {
        var input = ZSTD_inBuffer(src: nil, size: 0, pos: 0)
        while try step(&input, ZSTD_e_end) != 0 {}
    }

    private func step(_ input: inout ZSTD_inBuffer, _ directive: ZSTD_EndDirective) throws -> Int {
        var out = ZSTD_outBuffer(dst: buffer.baseAddress, size: buffer.count, pos: 0)
        let remaining = ZSTD_compressStream2(context, &out, &input, directive)
        if ZSTD_isError(remaining) != 0 {
            throw ArchiveError.zstd(operation: "zstd compression", message: String(cString: ZSTD_getErrorName(remaining)))
        }
        try output.write(UnsafeRawBufferPointer(rebasing: buffer[0..<out.pos]))
        return remaining
    }
}

/// zstd decoding of exactly one frame; anything after it is trailing garbage.
final class ZstdDecompressor: StreamDecompressor {
    private let context: OpaquePointer
    private let input: ArchiveInputFile
    private let buffers: AlternatingBuffers
    private let outputSize = ZSTD_DStreamOutSize()
    private var inBuffer = ZSTD_inBuffer(src: nil, size: 0, pos: 0)
    private var ended = false

    init(input: ArchiveInputFile) throws {
        guard let context = ZSTD_createDCtx() else { throw ArchiveError.zstd(operation: "start the zstd decoder", message: "out of memory") }
        self.context = context
        self.input = input
        buffers = AlternatingBuffers(size: outputSize)
        // Refuse frames that would need more than a 128 MiB window: memory stays bounded.
        ZSTD_DCtx_setParameter(context, ZSTD_d_windowLogMax, 27)
    }

    deinit { ZSTD_freeDCtx(context) }

    func next() throws -> UnsafeRawBufferPointer? {
        if ended { return nil }
        let buffer = buffers.swap()
        var out = ZSTD_outBuffer(dst: buffer.baseAddress, size: outputSize, pos: 0)
        while out.pos == 0 {
            if inBuffer.pos == inBuffer.size {
                let chunk = try input.read()
                if chunk.count == 0 { throw ArchiveError.truncated(archive: input.path) }
                inBuffer = ZSTD_inBuffer(src: chunk.baseAddress, size: chunk.count, pos: 0)
            }
            let result = ZSTD_decompressStream(context, &out, &inBuffer)
            if ZSTD_isError(result) != 0 {
                throw ArchiveError.zstd(operation: "zstd decompression of \(input.path)", message: String(cString: ZSTD_getErrorName(result)))
            }
            if result == 0 {
                // The frame is complete once all its output is flushed.
                ended = true
                if try inBuffer.pos < inBuffer.size || input.read().count > 0 {
                    throw ArchiveError.trailingGarbage(archive: input.path)
                }
                break
            }
        }
        return out.pos == 0 ? nil : UnsafeRawBufferPointer(rebasing: buffer[0..<out.pos])
    }
}

/// Small buffers (manifests on the wire) compressed in one call.
package enum ZstdData {
    static let magic: [UInt8] = [0x28, 0xB5, 0x2F, 0xFD]

    package static func isCompressed(_ data: Data) -> Bool { data.prefix(4).elementsEqual(magic) }

    package static func compress(_ data: Data, level: Int32 = 19) throws -> Data {
        let bound = ZSTD_compressBound(data.count)
        var output = Data(count: bound)
        let written = output.withUnsafeMutableBytes { out in
            data.withUnsafeBytes { input in ZSTD_compress(out.baseAddress, bound, input.baseAddress, input.count, level) }
        }
        if ZSTD_isError(written) != 0 {
            throw ArchiveError.zstd(operation: "zstd compression", message: String(cString: ZSTD_getErrorName(written)))
        }
        return output.prefix(written)
    }

    /// Compresses `data` against `prefix` (zstd's patch mode: the frame refers back into the
    /// prefix's bytes, so data that differs a little from the prefix costs about its
    /// differences). Decoding needs the very same prefix; the frame's content checksum
    /// catches another one.
    package static func compress(_ data: Data, level: Int32 = 19, prefix: Data) throws -> Data {
        guard let context = ZSTD_createCCtx() else { throw ArchiveError.zstd(operation: "start the zstd encoder", message: "out of memory") }
        defer { ZSTD_freeCCtx(context) }
        let window = windowLog(covering: prefix.count + data.count)
        for (parameter, value) in [(ZSTD_c_compressionLevel, level), (ZSTD_c_checksumFlag, 1), (ZSTD_c_windowLog, window),
                                   (ZSTD_c_enableLongDistanceMatching, 1)] {
            try check(ZSTD_CCtx_setParameter(context, parameter, value), "configure the zstd encoder")
        }
        let bound = ZSTD_compressBound(data.count)
        var output = Data(count: bound)
        let written = try prefix.withUnsafeBytes { prefixBytes in
            try check(ZSTD_CCtx_refPrefix(context, prefixBytes.baseAddress, prefixBytes.count), "use the zstd prefix")
            return output.withUnsafeMutableBytes { out in
                data.withUnsafeBytes { input in ZSTD_compress2(context, out.baseAddress, bound, input.baseAddress, input.count) }
            }
        }
        try check(written, "zstd compression")
        return output.prefix(written)
    }

    /// Decompresses one frame made by `compress(_:level:prefix:)` against the same `prefix`.
    package static func decompress(_ data: Data, source: String, limit: Int, prefix: Data) throws -> Data {
        let size = try contentSize(data, source: source, limit: limit)
        guard let context = ZSTD_createDCtx() else { throw ArchiveError.zstd(operation: "start the zstd decoder", message: "out of memory") }
        defer { ZSTD_freeDCtx(context) }
        try check(ZSTD_DCtx_setParameter(context, ZSTD_d_windowLogMax, windowLog(covering: prefix.count + size)), "configure the zstd decoder")
        var output = Data(count: size)
        let written = try prefix.withUnsafeBytes { prefixBytes in
            try check(ZSTD_DCtx_refPrefix(context, prefixBytes.baseAddress, prefixBytes.count), "use the zstd prefix")
            return output.withUnsafeMutableBytes { out in
                data.withUnsafeBytes { input in ZSTD_decompressDCtx(context, out.baseAddress, out.count, input.baseAddress, input.count) }
            }
        }
        try check(written, "zstd decompression of \(source)")
        guard written == size else { throw ArchiveError.zstd(operation: "zstd decompression of \(source)", message: "short output") }
        return output
    }

    /// The smallest window (log2, at least zstd's minimum of 10) that spans `bytes`.
    private static func windowLog(covering bytes: Int) -> Int32 {
        var log: Int32 = 10
        while log < 31, (1 << log) < bytes { log += 1 }
        return log
    }

    private static func check(_ result: Int, _ operation: String) throws {
        if ZSTD_isError(result) != 0 { throw ArchiveError.zstd(operation: operation, message: String(cString: ZSTD_getErrorName(result))) }
    }

    /// The size a single frame records, when it records one no larger than `limit`.
    private static func contentSize(_ data: Data, source: String, limit: Int) throws -> Int {
        let size = data.withUnsafeBytes { ZSTD_getFrameContentSize($0.baseAddress, $0.count) }
        guard size != ZSTD_CONTENTSIZE_ERROR, size != ZSTD_CONTENTSIZE_UNKNOWN, size <= UInt64(limit) else {
            throw ArchiveError.zstd(operation: "zstd decompression of \(source)", message: "not a single zstd frame of known size under \(limit) bytes")
        }
        return Int(size)
    }

    /// Decompresses one frame that records its size, refusing more than `limit` bytes.
    package static func decompress(_ data: Data, source: String, limit: Int = 1 << 30) throws -> Data {
        let size = try contentSize(data, source: source, limit: limit)
        var output = Data(count: size)
        let written = output.withUnsafeMutableBytes { out in
            data.withUnsafeBytes { input in ZSTD_decompress(out.baseAddress, out.count, input.baseAddress, input.count) }
        }
        if ZSTD_isError(written) != 0 || written != size {
            let message = ZSTD_isError(written) != 0 ? String(cString: ZSTD_getErrorName(written)) : "short output"
            throw ArchiveError.zstd(operation: "zstd decompression of \(source)", message: message)
        }
        return output
    }
}
