/* A training batch gathered from uint8 images through a 256-entry table of input values.
 *
 * The engine's model input is a function of the pixel byte alone (scale to [0, 1],
 * standardise, cast: hpo/engine/data.py), so a table of its 256 values, built with that
 * same function, gives every pixel's input value exactly (hpo/engine/bytebatches.py checks
 * the whole training split bit for bit before using it). A step then reads 1 byte per pixel
 * from the training images instead of 4 (float32): 100 KB instead of 400 KB per MNIST batch
 * of 128, which keeps the small nets' weights and optimizer state in the core's cache.
 *
 * gather(codes, rows, row_len, index, count, table, itemsize, out, labels, labels_out)
 *
 *   codes       address of a contiguous uint8 array of rows x row_len
 *   index       address of `count` int64 row numbers, each in [0, rows) (checked)
 *   table       address of 256 items of `itemsize` bytes (2, 4 or 8)
 *   out         address of count x row_len items of `itemsize` bytes
 *   labels      address of `rows` int64 labels, or 0: the batch's labels are copied to
 *   labels_out  `count` int64 (one call per step instead of two)
 *
 * 4-byte items (float32) on a CPU with AVX-512: 16 pixels at a time, the table held in 16
 * registers, looked up with 8 two-register permutes and a 3-level blend on the top 3 bits
 * of the byte. 2-byte items (bfloat16, float16) with AVX-512BW: 32 pixels at a time, 8
 * registers, 4 permutes and 2 blends. Elsewhere (8-byte items, other CPUs) a plain loop.
 * Batches of more than GRAIN items are split by rows over PyTorch's OpenMP threads (the
 * libgomp torch has loaded). The GIL is released; the caller keeps the buffers alive.
 * Optional extension (setup.py): without it the engine gathers rows of the prepared float
 * images with index_select, with the same values.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

#if defined(__GNUC__) && defined(__x86_64__)
#include <immintrin.h>
#define HAVE_X86 1
#else
#define HAVE_X86 0
#endif

#ifndef GRAIN
#define GRAIN 32768
#endif

#define PLAIN(NAME, T)                                                                     \
    static void NAME(const uint8_t *src, Py_ssize_t n, const T *table, T *dst) {           \
        for (Py_ssize_t j = 0; j < n; j++) dst[j] = table[src[j]];                         \
    }
PLAIN(row16, uint16_t)
PLAIN(row32, uint32_t)
PLAIN(row64, uint64_t)

#if HAVE_X86
__attribute__((target("avx512f"))) static void row32_avx512(const uint8_t *src, Py_ssize_t n,
                                                             const uint32_t *table,
                                                             uint32_t *dst) {
    __m512i t[16];
    for (int k = 0; k < 16; k++) t[k] = _mm512_loadu_si512((const void *)(table + 16 * k));
    const __m512i b5 = _mm512_set1_epi32(32), b6 = _mm512_set1_epi32(64),
                  b7 = _mm512_set1_epi32(128);
    Py_ssize_t j = 0;
    for (; j + 16 <= n; j += 16) {
        __m512i idx = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(src + j)));
        /* entries 32k .. 32k+31: the low 5 bits of idx pick one of two registers' lanes */
        __m512i r0 = _mm512_permutex2var_epi32(t[0], idx, t[1]);
        __m512i r1 = _mm512_permutex2var_epi32(t[2], idx, t[3]);
        __m512i r2 = _mm512_permutex2var_epi32(t[4], idx, t[5]);
        __m512i r3 = _mm512_permutex2var_epi32(t[6], idx, t[7]);
        __m512i r4 = _mm512_permutex2var_epi32(t[8], idx, t[9]);
        __m512i r5 = _mm512_permutex2var_epi32(t[10], idx, t[11]);
        __m512i r6 = _mm512_permutex2var_epi32(t[12], idx, t[13]);
        __m512i r7 = _mm512_permutex2var_epi32(t[14], idx, t[15]);
        __mmask16 m5 = _mm512_test_epi32_mask(idx, b5);
        __mmask16 m6 = _mm512_test_epi32_mask(idx, b6);
        __mmask16 m7 = _mm512_test_epi32_mask(idx, b7);
        __m512i s0 = _mm512_mask_blend_epi32(m5, r0, r1);
        __m512i s1 = _mm512_mask_blend_epi32(m5, r2, r3);
        __m512i s2 = _mm512_mask_blend_epi32(m5, r4, r5);
        __m512i s3 = _mm512_mask_blend_epi32(m5, r6, r7);
        __m512i u0 = _mm512_mask_blend_epi32(m6, s0, s1);
        __m512i u1 = _mm512_mask_blend_epi32(m6, s2, s3);
        _mm512_storeu_si512((void *)(dst + j), _mm512_mask_blend_epi32(m7, u0, u1));
    }
    for (; j < n; j++) dst[j] = table[src[j]];
}

__attribute__((target("avx512f,avx512bw"))) static void row16_avx512(const uint8_t *src,
                                                                     Py_ssize_t n,
                                                                     const uint16_t *table,
                                                                     uint16_t *dst) {
    __m512i t[8];
    for (int k = 0; k < 8; k++) t[k] = _mm512_loadu_si512((const void *)(table + 32 * k));
    const __m512i b6 = _mm512_set1_epi16(64), b7 = _mm512_set1_epi16(128);
    Py_ssize_t j = 0;
    for (; j + 32 <= n; j += 32) {
        __m512i idx = _mm512_cvtepu8_epi16(_mm256_loadu_si256((const __m256i *)(src + j)));
        /* entries 64k .. 64k+63: the low 6 bits of idx pick one of two registers' lanes */
        __m512i r0 = _mm512_permutex2var_epi16(t[0], idx, t[1]);
        __m512i r1 = _mm512_permutex2var_epi16(t[2], idx, t[3]);
        __m512i r2 = _mm512_permutex2var_epi16(t[4], idx, t[5]);
        __m512i r3 = _mm512_permutex2var_epi16(t[6], idx, t[7]);
        __mmask32 m6 = _mm512_test_epi16_mask(idx, b6);
        __mmask32 m7 = _mm512_test_epi16_mask(idx, b7);
        __m512i u0 = _mm512_mask_blend_epi16(m6, r0, r1);
        __m512i u1 = _mm512_mask_blend_epi16(m6, r2, r3);
        _mm512_storeu_si512((void *)(dst + j), _mm512_mask_blend_epi16(m7, u0, u1));
    }
    for (; j < n; j++) dst[j] = table[src[j]];
}
#endif

typedef void (*row_fn)(const uint8_t *, Py_ssize_t, const void *, void *);

/* Rows ahead whose bytes are requested before they are needed: the rows are random, so
 * the hardware prefetcher cannot guess the next one, and one row at a time would wait for
 * memory at every row. */
#define AHEAD 3

static void prefetch_row(const uint8_t *row, Py_ssize_t row_len) {
#if defined(__GNUC__)
    for (Py_ssize_t off = 0; off < row_len; off += 64) __builtin_prefetch(row + off, 0, 3);
#else
    (void)row;
    (void)row_len;
#endif
}

static void gather_rows(const uint8_t *codes, Py_ssize_t row_len, const int64_t *index,
                        Py_ssize_t count, const void *table, long size, void *out,
                        row_fn fn) {
    _Pragma("omp parallel if (count * row_len > GRAIN)")
    {
        _Pragma("omp for schedule(static)")
        for (Py_ssize_t r = 0; r < count; r++) {
            if (r + AHEAD < count) prefetch_row(codes + index[r + AHEAD] * row_len, row_len);
            fn(codes + index[r] * row_len, row_len, table, (char *)out + r * row_len * size);
        }
    }
}

static row_fn pick(long size) {
#if HAVE_X86
    if (size == 4 && __builtin_cpu_supports("avx512f")) return (row_fn)row32_avx512;
    if (size == 2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw"))
        return (row_fn)row16_avx512;
#endif
    if (size == 2) return (row_fn)row16;
    if (size == 8) return (row_fn)row64;
    return (row_fn)row32;
}

static PyObject *gather(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    if (nargs != 10) {
        PyErr_Format(PyExc_TypeError,
                     "gather(codes, rows, row_len, index, count, table, itemsize, out, labels, "
                     "labels_out) takes 10 arguments, got %zd",
                     nargs);
        return NULL;
    }
    const uint8_t *codes = PyLong_AsVoidPtr(args[0]);
    Py_ssize_t rows = PyLong_AsSsize_t(args[1]);
    Py_ssize_t row_len = PyLong_AsSsize_t(args[2]);
    const int64_t *index = PyLong_AsVoidPtr(args[3]);
    Py_ssize_t count = PyLong_AsSsize_t(args[4]);
    const void *table = PyLong_AsVoidPtr(args[5]);
    long size = PyLong_AsLong(args[6]);
    void *out = PyLong_AsVoidPtr(args[7]);
    const int64_t *labels = PyLong_AsVoidPtr(args[8]);
    int64_t *labels_out = PyLong_AsVoidPtr(args[9]);
    if (PyErr_Occurred()) return NULL;
    if (labels != NULL && count > 0 && labels_out == NULL) {
        PyErr_SetString(PyExc_ValueError, "gather: labels given without labels_out");
        return NULL;
    }
    if (rows < 0 || row_len < 0 || count < 0 || table == NULL ||
        (count > 0 && (index == NULL || out == NULL || (row_len > 0 && codes == NULL)))) {
        PyErr_SetString(PyExc_ValueError, "gather: null address or negative size");
        return NULL;
    }
    if (size != 2 && size != 4 && size != 8) {
        PyErr_Format(PyExc_ValueError, "gather: itemsize must be 2, 4 or 8, got %ld", size);
        return NULL;
    }
    for (Py_ssize_t r = 0; r < count; r++) {
        if (index[r] < 0 || index[r] >= rows) {
            PyErr_Format(PyExc_IndexError, "gather: row %lld out of range [0, %zd)",
                         (long long)index[r], rows);
            return NULL;
        }
    }
    row_fn fn = pick(size);
    Py_BEGIN_ALLOW_THREADS
    gather_rows(codes, row_len, index, count, table, size, out, fn);
    if (labels != NULL)
        for (Py_ssize_t r = 0; r < count; r++) labels_out[r] = labels[index[r]];
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"gather", (PyCFunction)(void (*)(void))gather, METH_FASTCALL,
     "gather(codes, rows, row_len, index, count, table, itemsize, out, labels, labels_out)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "hpo.engine._bytegather",
    "Gather uint8 image rows through a 256-entry table of model input values.", -1, methods,
};

PyMODINIT_FUNC PyInit__bytegather(void) { return PyModule_Create(&module); }
