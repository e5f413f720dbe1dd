/* Does a CPU tensor hold a value exactly on a kink?  One read pass, no allocation.
 *
 * The activations (hpo/engine/activations.py) must know, before PyTorch's in-place kernel
 * can overwrite the input, whether any input lies exactly on a kink (0 for ReLU and
 * LeakyReLU; 0 and 6 for ReLU6). With PyTorch ops that is a cast to bool plus a byte-wise
 * min: two kernels, a temporary and about as much time as the ReLU itself. This scan reads
 * the input once, compares bit patterns (so it works the same for float16, bfloat16,
 * float32 and float64), stops at the first block with a hit, and allocates nothing.
 *
 * A value equals the kink k exactly when its bits, masked, equal k's pattern: for k = 0 the
 * mask drops the sign bit (+0 and -0 are both on the kink; subnormals are not); for other k
 * the mask keeps every bit (one representation only; NaN never matches).
 *
 * any_on_kinks(address, numel, (itemsize, mask0, pattern0, mask1, pattern1)) -> bool
 *
 * The caller guarantees a contiguous CPU tensor of `numel` items of `itemsize` bytes at
 * `address` that stays alive during the call (the GIL is released while scanning).
 * Built as an optional extension (setup.py); without it the activations use PyTorch ops
 * and give the same results.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <omp.h>

/* Items compared before looking for a hit: large enough for the inner loop to vectorise,
 * small enough to stop soon when kinks are frequent (float16/bfloat16) and to split the
 * work between threads. */
#define BLOCK 4096

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define CLONES __attribute__((target_clones("arch=x86-64-v4", "avx2", "default")))
#else
#define CLONES
#endif

/* PyTorch's elementwise kernels (the op that wrote the input, then the ReLU itself) split
 * their work as at::parallel_for does with at::internal::GRAIN_SIZE: no parallel region
 * below GRAIN items; else thread t of the team takes the t-th of min(team, ceil(n / GRAIN))
 * equal contiguous chunks. The scan splits the same way, so each thread reads the part its
 * own core has just written (still in its cache), and the team is PyTorch's own. Up to
 * GRAIN items that is one chunk: the calling thread scans it without waking the team. */
#ifndef GRAIN
#define GRAIN 32768
#endif

/* One block: any item on a kink? The loop has no exit, so it vectorises. */
#define BLOCK_SCAN(NAME, T)                                                                \
    CLONES static int NAME(const T *x, Py_ssize_t n, T m0, T p0, T m1, T p1) {            \
        int hit = 0;                                                                       \
        for (Py_ssize_t i = 0; i < n; i++)                                                 \
            hit |= ((T)(x[i] & m0) == p0) | ((T)(x[i] & m1) == p1);                       \
        return hit;                                                                        \
    }

/* All blocks, split as PyTorch splits elementwise work, over the OpenMP threads PyTorch
 * uses (the extension links the libgomp that torch has already loaded, so it is the same
 * thread pool and the same torch.set_num_threads); blocks after a hit are skipped. */
#define SCAN(NAME, BLOCK_FN, T)                                                            \
    static int NAME(const T *x, Py_ssize_t n, T m0, T p0, T m1, T p1) {                   \
        int found = 0;                                                                     \
        if (n <= GRAIN || omp_get_max_threads() == 1 || omp_in_parallel()) {              \
            for (Py_ssize_t s = 0; s < n && !found; s += BLOCK)                            \
                found = BLOCK_FN(x + s, n - s < BLOCK ? n - s : BLOCK, m0, p0, m1, p1);   \
            return found;                                                                  \
        }                                                                                  \
        _Pragma("omp parallel")                                                            \
        {                                                                                  \
            Py_ssize_t team = omp_get_num_threads();                                       \
            Py_ssize_t parts = (n + GRAIN - 1) / GRAIN;                                    \
            if (parts < team) team = parts;                                                \
            Py_ssize_t chunk = (n + team - 1) / team;                                      \
            Py_ssize_t begin = (Py_ssize_t)omp_get_thread_num() * chunk;                   \
            Py_ssize_t end = begin + chunk < n ? begin + chunk : n;                        \
            for (Py_ssize_t s = begin; s < end; s += BLOCK) {                              \
                int seen;                                                                  \
                _Pragma("omp atomic read")                                                 \
                seen = found;                                                              \
                if (seen) break;                                                           \
                if (BLOCK_FN(x + s, end - s < BLOCK ? end - s : BLOCK, m0, p0, m1, p1)) {  \
                    _Pragma("omp atomic write")                                            \
                    found = 1;                                                             \
                }                                                                          \
            }                                                                              \
        }                                                                                  \
        return found;                                                                      \
    }

BLOCK_SCAN(block16, uint16_t)
BLOCK_SCAN(block32, uint32_t)
BLOCK_SCAN(block64, uint64_t)
SCAN(scan16, block16, uint16_t)
SCAN(scan32, block32, uint32_t)
SCAN(scan64, block64, uint64_t)

static PyObject *any_on_kinks(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    if (nargs != 3 || !PyTuple_Check(args[2]) || PyTuple_GET_SIZE(args[2]) != 5) {
        PyErr_SetString(PyExc_TypeError,
                        "any_on_kinks(address, numel, (itemsize, mask0, pattern0, mask1, "
                        "pattern1)) takes 3 arguments, the last a tuple of 5 ints");
        return NULL;
    }
    void *ptr = PyLong_AsVoidPtr(args[0]);
    Py_ssize_t n = PyLong_AsSsize_t(args[1]);
    long size = PyLong_AsLong(PyTuple_GET_ITEM(args[2], 0));
    unsigned long long v[4];
    for (int i = 0; i < 4; i++) v[i] = PyLong_AsUnsignedLongLong(PyTuple_GET_ITEM(args[2], i + 1));
    if (PyErr_Occurred()) return NULL;
    if (n < 0 || (n > 0 && ptr == NULL)) {
        PyErr_SetString(PyExc_ValueError, "any_on_kinks: null address or negative numel");
        return NULL;
    }
    if (size != 2 && size != 4 && size != 8) {
        PyErr_Format(PyExc_ValueError, "any_on_kinks: itemsize must be 2, 4 or 8, got %ld",
                     size);
        return NULL;
    }
    int hit = 0;
    Py_BEGIN_ALLOW_THREADS
    if (size == 2)
        hit = scan16(ptr, n, (uint16_t)v[0], (uint16_t)v[1], (uint16_t)v[2], (uint16_t)v[3]);
    else if (size == 4)
        hit = scan32(ptr, n, (uint32_t)v[0], (uint32_t)v[1], (uint32_t)v[2], (uint32_t)v[3]);
    else
        hit = scan64(ptr, n, v[0], v[1], v[2], v[3]);
    Py_END_ALLOW_THREADS
    return PyBool_FromLong(hit);
}

static PyMethodDef methods[] = {
    {"any_on_kinks", (PyCFunction)(void (*)(void))any_on_kinks, METH_FASTCALL,
     "any_on_kinks(address, numel, (itemsize, mask0, pattern0, mask1, pattern1)) -> bool"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "hpo.engine._kinkscan",
    "Scan a CPU tensor's memory for values exactly on an activation's kinks.", -1, methods,
};

PyMODINIT_FUNC PyInit__kinkscan(void) { return PyModule_Create(&module); }
