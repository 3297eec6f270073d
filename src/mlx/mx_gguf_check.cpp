// mx_gguf_check.cpp - a bounds-checked walk over a GGUF file's header: run
// before MLX reads the file (MLX's GGUF reader trusts every length and offset
// and crashes on a truncated or corrupt one, and fails without naming the
// tensor on a type it cannot convert), and exposed to the engine so it knows
// each tensor's GGML type and where its blocks lie (mx_gguf_tensors).
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

// Every GGML type ggml defines today: name, elements per block, bytes per
// block (ids 4, 5 and 31-33, 36-38 were retired).
struct GgmlType {
    const char *name;
    uint32_t items, bytes;
};

GgmlType ggml_type(uint32_t type) {
    switch (type) {
    case 0: return {"F32", 1, 4};
    case 1: return {"F16", 1, 2};
    case 2: return {"Q4_0", 32, 18};
    case 3: return {"Q4_1", 32, 20};
    case 6: return {"Q5_0", 32, 22};
    case 7: return {"Q5_1", 32, 24};
    case 8: return {"Q8_0", 32, 34};
    case 9: return {"Q8_1", 32, 40};
    case 10: return {"Q2_K", 256, 84};
    case 11: return {"Q3_K", 256, 110};
    case 12: return {"Q4_K", 256, 144};
    case 13: return {"Q5_K", 256, 176};
    case 14: return {"Q6_K", 256, 210};
    case 15: return {"Q8_K", 256, 292};
    case 16: return {"IQ2_XXS", 256, 66};
    case 17: return {"IQ2_XS", 256, 74};
    case 18: return {"IQ3_XXS", 256, 98};
    case 19: return {"IQ1_S", 256, 50};
    case 20: return {"IQ4_NL", 32, 18};
    case 21: return {"IQ3_S", 256, 110};
    case 22: return {"IQ2_S", 256, 82};
    case 23: return {"IQ4_XS", 256, 136};
    case 24: return {"I8", 1, 1};
    case 25: return {"I16", 1, 2};
    case 26: return {"I32", 1, 4};
    case 27: return {"I64", 1, 8};
    case 28: return {"F64", 1, 8};
    case 29: return {"IQ1_M", 256, 56};
    case 30: return {"BF16", 1, 2};
    case 34: return {"TQ1_0", 256, 54};
    case 35: return {"TQ2_0", 256, 66};
    case 39: return {"MXFP4", 32, 17};
    case 40: return {"NVFP4", 64, 36};
    case 41: return {"Q1_0", 128, 18};
    default: return {nullptr, 0, 0};
    }
}

// What MLX's reader (its bundled gguflib) converts: F32/F16/BF16, Q4_0/Q4_1/
// Q8_0 as affine triples, Q2_K/Q4_K/Q6_K to float16. Anything else makes
// it fail on the whole file with no tensor named, so we refuse it first.
bool mlx_reads(uint32_t type) {
    switch (type) {
    case 0: case 1: case 2: case 3: case 8: case 10: case 12: case 14: case 30: return true;
    default: return false;
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

// MLX 0.32's GGUF reader does not step over a float64 value, scalar or in
// an array, and reads the keys after it from the wrong place (a crash):
// such a file is refused here, naming the key.
void refuse_float64(const Reader &r, uint32_t type, const std::string &key) {
    if (type == V_FLOAT64)
        r.fail("metadata " + (key.empty() ? std::string("(a long key)") : key) +
               " holds a float64, which MLX's GGUF reader cannot read");
}

void skip_value(Reader &r, uint32_t type, int depth, const std::string &key) {
    refuse_float64(r, type, key);
    if (type == V_STRING) {
        r.skip(r.u64("a string length"), "a string");
    } else if (type == V_ARRAY) {
        if (depth > 4) r.fail("arrays nested too deep");
        uint32_t et = r.u32("an array type");
        uint64_t n = r.u64("an array length");
        refuse_float64(r, et, key);
        if (uint64_t sz = scalar_size(et)) {
            if (n > r.left() / sz) r.fail("array longer than the file");
            r.skip(n * sz, "an array");
        } else if (et == V_STRING || et == V_ARRAY) {
            if (n > r.left() / 8) r.fail("array longer than the file");
            for (uint64_t i = 0; i < n; i++) skip_value(r, et, depth + 1, key);
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

struct TensorInfo {
    std::string name;
    uint32_t type;
    uint32_t ndim;
    uint64_t dims[4];  // GGUF order: dims[0] is the row length
    uint64_t offset;   // absolute, once the data start is known
    uint64_t bytes;
};

// Reads the header and tensor table; every extent is checked against the
// file. Names longer than 256 bytes come back empty.
std::vector<TensorInfo> walk(const std::string &path) {
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
            skip_value(r, type, 0, key);
        }
    }

    std::vector<TensorInfo> infos;
    infos.reserve(n_tensors);
    for (uint64_t i = 0; i < n_tensors; i++) {
        TensorInfo t{};
        t.name = r.str("a tensor name", 256);
        t.ndim = r.u32("a tensor rank");
        if (t.ndim > 4) r.fail("tensor " + t.name + " has " + std::to_string(t.ndim) + " dimensions");
        uint64_t count = 1;
        for (uint32_t d = 0; d < t.ndim; d++) {
            uint64_t dim = r.u64("a tensor dimension");
            if (dim != 0 && count > UINT64_MAX / dim) r.fail("tensor " + t.name + " is too large");
            count *= dim;
            t.dims[d] = dim;
        }
        t.type = r.u32("a tensor type");
        GgmlType g = ggml_type(t.type);
        if (!g.name)
            r.fail("tensor " + t.name + " has unknown GGML type " + std::to_string(t.type));
        // Blocks run along the rows (dims[0]).
        if ((t.ndim ? t.dims[0] : count) % g.items) r.fail("tensor " + t.name + " does not fill its blocks");
        uint64_t blocks = count / g.items;
        if (blocks > r.size() / g.bytes) r.fail("tensor " + t.name + " is larger than the file");
        t.bytes = blocks * g.bytes;
        t.offset = r.u64("a tensor offset");
        infos.push_back(std::move(t));
    }

    // The reader may align to 32 whatever the file says; take the later start.
    uint64_t start = align_up(r.pos(), alignment);
    uint64_t start32 = align_up(r.pos(), 32);
    if (start32 > start) start = start32;
    if (start > r.size()) r.fail("no tensor data");
    uint64_t room = r.size() - start;
    for (TensorInfo &t : infos) {
        if (t.offset > room || t.bytes > room - t.offset)
            r.fail("tensor data runs past the end of the file (truncated?)");
        t.offset += start;
    }
    return infos;
}

}  // namespace

namespace gomlx::mx {

void check_gguf_file(const std::string &path) {
    for (const TensorInfo &t : walk(path))
        if (!mlx_reads(t.type))
            throw std::runtime_error(path + ": tensor " + t.name + " is " + ggml_type(t.type).name +
                                     " (GGML type " + std::to_string(t.type) +
                                     "), which MLX's GGUF reader cannot convert (it reads F32, "
                                     "F16, BF16, Q4_0, Q4_1, Q8_0, Q2_K, Q4_K and Q6_K)");
}

}  // namespace gomlx::mx

using namespace gomlx::mx;

extern "C" {

const char *mx_ggml_type_name(int type) { return type < 0 ? nullptr : ggml_type((uint32_t)type).name; }

int mx_gguf_mlx_reads(int type) { return type >= 0 && mlx_reads((uint32_t)type); }

int mx_gguf_tensors(const char *path, mx_gguf_tensor_fn fn, void *user) {
    if (!path || !fn) {
        record("mx_gguf_tensors: NULL path or callback");
        return -1;
    }
    return guard_ret(-1, [&] {
        for (const TensorInfo &t : walk(path)) {
            mx_gguf_tensor info{};
            info.name = t.name.c_str();
            info.ggml_type = (int)t.type;
            info.ndim = (int)t.ndim;
            // Row-major, as MLX shapes the array: GGUF lists the row length first.
            for (uint32_t d = 0; d < t.ndim; d++) info.shape[d] = (int64_t)t.dims[t.ndim - 1 - d];
            info.offset = t.offset;
            info.nbytes = t.bytes;
            if (int rc = fn(&info, user)) {
                mx_clear_error();
                return rc;
            }
        }
        return 0;
    });
}

}  // extern "C"
