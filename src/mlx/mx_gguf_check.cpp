// mx_gguf_check.cpp - a bounds-checked walk over a GGUF file's header before
// MLX reads it: MLX's GGUF reader trusts every length and offset in the file
// and crashes on a truncated or corrupt one, so we reject those first.
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include <sys/stat.h>

#include "mlx/mx_internal.h"

namespace {

enum : uint32_t {
    V_UINT8, V_INT8, V_UINT16, V_INT16, V_UINT32, V_INT32, V_FLOAT32, V_BOOL,
    V_STRING, V_ARRAY, V_UINT64, V_INT64, V_FLOAT64
};

// Elements per block and bytes per block of the GGML types MLX's reader can
// turn into arrays; anything else is refused before it reaches the reader.
struct BlockSize {
    uint32_t items, bytes;
};

BlockSize block_size(uint32_t type) {
    switch (type) {
    case 0: return {1, 4};       // F32
    case 1: return {1, 2};       // F16
    case 2: return {32, 18};     // Q4_0
    case 3: return {32, 20};     // Q4_1
    case 6: return {32, 22};     // Q5_0
    case 7: return {32, 24};     // Q5_1
    case 8: return {32, 34};     // Q8_0
    case 10: return {256, 84};   // Q2_K
    case 11: return {256, 110};  // Q3_K
    case 12: return {256, 144};  // Q4_K
    case 13: return {256, 176};  // Q5_K
    case 14: return {256, 210};  // Q6_K
    case 15: return {256, 292};  // Q8_K
    case 30: return {1, 2};      // BF16
    default: return {0, 0};
    }
}

class Reader {
  public:
    Reader(const std::string &path) : path_(path) {
        f_ = fopen(path.c_str(), "rb");
        if (!f_) fail(std::string("cannot open: ") + strerror(errno));
        struct stat st;
        if (fstat(fileno(f_), &st) != 0) fail("cannot stat");
        size_ = (uint64_t)st.st_size;
    }
    ~Reader() { fclose(f_); }
    Reader(const Reader &) = delete;
    Reader &operator=(const Reader &) = delete;

    [[noreturn]] void fail(const std::string &why) const {
        throw std::runtime_error(path_ + ": bad GGUF file: " + why);
    }
    uint64_t pos() const { return pos_; }
    uint64_t size() const { return size_; }
    uint64_t left() const { return size_ - pos_; }

    void need(uint64_t n, const char *what) const {
        if (n > left())
            fail(std::string("truncated in ") + what + " at byte " + std::to_string(pos_));
    }
    void read(void *dst, uint64_t n, const char *what) {
        need(n, what);
        if (fread(dst, 1, n, f_) != n) fail("read error");
        pos_ += n;
    }
    void skip(uint64_t n, const char *what) {
        need(n, what);
        if (fseeko(f_, (off_t)(pos_ + n), SEEK_SET) != 0) fail("seek error");
        pos_ += n;
    }
    uint32_t u32(const char *what) {
        unsigned char b[4];
        read(b, 4, what);
        return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
    }
    uint64_t u64(const char *what) {
        uint64_t lo = u32(what);
        return lo | (uint64_t)u32(what) << 32;
    }
    // Reads a length-prefixed string, keeping at most `keep` bytes of it.
    std::string str(const char *what, uint64_t keep) {
        uint64_t n = u64(what);
        need(n, what);
        std::string s;
        if (n <= keep) {
            s.resize(n);
            read(s.data(), n, what);
        } else {
            skip(n, what);
        }
        return s;
    }

  private:
    std::string path_;
    FILE *f_ = nullptr;
    uint64_t size_ = 0, pos_ = 0;
};

uint64_t scalar_size(uint32_t type) {
    switch (type) {
    case V_UINT8: case V_INT8: case V_BOOL: return 1;
    case V_UINT16: case V_INT16: return 2;
    case V_UINT32: case V_INT32: case V_FLOAT32: return 4;
    case V_UINT64: case V_INT64: case V_FLOAT64: return 8;
    default: return 0;
    }
}

void skip_value(Reader &r, uint32_t type, int depth) {
    if (type == V_STRING) {
        r.skip(r.u64("a string length"), "a string");
    } else if (type == V_ARRAY) {
        if (depth > 4) r.fail("arrays nested too deep");
        uint32_t et = r.u32("an array type");
        uint64_t n = r.u64("an array length");
        if (uint64_t sz = scalar_size(et)) {
            if (n > r.left() / sz) r.fail("array longer than the file");
            r.skip(n * sz, "an array");
        } else if (et == V_STRING || et == V_ARRAY) {
            if (n > r.left() / 8) r.fail("array longer than the file");
            for (uint64_t i = 0; i < n; i++) skip_value(r, et, depth + 1);
        } else {
            r.fail("unknown array element type " + std::to_string(et));
        }
    } else if (uint64_t sz = scalar_size(type)) {
        r.skip(sz, "a value");
    } else {
        r.fail("unknown value type " + std::to_string(type));
    }
}

uint64_t align_up(uint64_t x, uint64_t a) { return (x + a - 1) / a * a; }

}  // namespace

namespace gomlx::mx {

void check_gguf_file(const std::string &path) {
    Reader r(path);
    char magic[4];
    r.read(magic, 4, "the magic");
    if (memcmp(magic, "GGUF", 4) != 0) r.fail("not a GGUF file");
    uint32_t version = r.u32("the version");
    if (version != 2 && version != 3) r.fail("unsupported version " + std::to_string(version));
    uint64_t n_tensors = r.u64("the tensor count");
    uint64_t n_kv = r.u64("the metadata count");
    // Every entry takes at least 12 bytes; this bounds the loops below.
    if (n_kv > r.left() / 12 || n_tensors > r.left() / 24) r.fail("counts larger than the file");

    uint64_t alignment = 32;
    for (uint64_t i = 0; i < n_kv; i++) {
        std::string key = r.str("a metadata key", 64);
        uint32_t type = r.u32("a metadata type");
        if (key == "general.alignment" && type == V_UINT32) {
            alignment = r.u32("general.alignment");
            if (alignment == 0) r.fail("general.alignment is 0");
        } else {
            skip_value(r, type, 0);
        }
    }

    struct Info {
        uint64_t offset, bytes;
    };
    std::vector<Info> infos;
    infos.reserve(n_tensors);
    for (uint64_t i = 0; i < n_tensors; i++) {
        std::string name = r.str("a tensor name", 256);
        uint32_t ndim = r.u32("a tensor rank");
        if (ndim > 4) r.fail("tensor " + name + " has " + std::to_string(ndim) + " dimensions");
        uint64_t count = 1;
        for (uint32_t d = 0; d < ndim; d++) {
            uint64_t dim = r.u64("a tensor dimension");
            if (dim != 0 && count > UINT64_MAX / dim) r.fail("tensor " + name + " is too large");
            count *= dim;
        }
        uint32_t type = r.u32("a tensor type");
        BlockSize bs = block_size(type);
        if (!bs.items)
            r.fail("tensor " + name + " has GGML type " + std::to_string(type) +
                   ", which MLX cannot load");
        if (count % bs.items) r.fail("tensor " + name + " does not fill its blocks");
        uint64_t blocks = count / bs.items;
        if (blocks > r.size() / bs.bytes) r.fail("tensor " + name + " is larger than the file");
        infos.push_back({r.u64("a tensor offset"), blocks * bs.bytes});
    }

    // The reader may align to 32 whatever the file says; take the later start.
    uint64_t start = align_up(r.pos(), alignment);
    uint64_t start32 = align_up(r.pos(), 32);
    if (start32 > start) start = start32;
    if (start > r.size()) r.fail("no tensor data");
    uint64_t room = r.size() - start;
    for (const Info &t : infos)
        if (t.offset > room || t.bytes > room - t.offset)
            r.fail("tensor data runs past the end of the file (truncated?)");
}

}  // namespace gomlx::mx
