/*
 * camseg._cpu: the CPU kernels of camseg's post-processing hot path.
 *
 * Four functions on contiguous buffers, each one call for a whole batch of
 * images, each releasing the GIL (camseg/_native.py splits a batch into
 * slices of images and runs them in threads):
 *
 *   range_f32       per-image min and max of float32 maps, and whether any
 *                   value is NaN or infinite (one pass).
 *   otsu_f32        per image, in one visit while the image is in cache: its
 *                   range (for the caller's checks); for the images the
 *                   caller keeps, the histogram over nbins equal bins of
 *                   [min, max] (numpy.histogram's, bin for bin, hence
 *                   skimage.filters.threshold_otsu's), Otsu's threshold, and
 *                   optionally the mask maps >= t with small components
 *                   removed.
 *   histogram_f32   the histograms alone, for the tests.
 *   small_objects   removal of components smaller than min_size pixels from
 *                   uint8 (bool) masks, in place, 4- or 8-connected.
 *
 * Exactness of the histogram.  numpy.histogram with equal bins over [lo, hi]
 * takes float32 edges linspace(lo, hi, nbins + 1), guesses the bin
 * k = (int)(((x - lo) / span) * nbins) in float32 and corrects it by one bin
 * against the edges (edges[k] <= x < edges[k + 1], the last bin closed).  The
 * result is the bin the edges say whenever the guess is within one bin of it.
 * Here the guess is (x - lo) * (nbins / span); a pixel whose guess lies within
 * `eps` of a bin boundary (a bound, in bins, on both guesses' rounding and on
 * the edges' own rounding) takes numpy's route exactly, and every other pixel
 * is provably in the guessed bin.  Where the bound is not small (a tiny span
 * next to a large offset), every pixel takes numpy's route.  Compile without
 * floating-point contraction (setup.py passes -ffp-contract=off): a fused
 * multiply-add would round the edges differently from numpy.
 *
 * Components are found on horizontal runs: each row is packed into 64-bit
 * words, runs are read off with count-trailing-zeros, and runs that overlap a
 * run of the previous row (columns widened by one for 8-connectivity) are
 * joined in a union-find whose roots carry the component's size.
 *
 * Sizes.  Every counter that grows with the number of pixels (histogram
 * counts, run indices, component sizes) is 64-bit, so no image is too large
 * for them; rows and columns are 32-bit and the glue refuses h or w above
 * INT32_MAX.  The run table starts small and doubles as runs are found (it
 * is kept across the images of one call), rather than being allocated for
 * the worst case (a checkerboard: h * ceil(w / 2) runs) up front.
 *
 * Buffers.  The glue asks for each buffer's format and refuses any other
 * element type than the one the kernel reads (float32 maps, one-byte masks,
 * int64 counts), so a float64 or int32 array of the right byte length is
 * an error, not misread bytes.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* the histogram must round exactly as numpy does: no fused multiply-add */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif

#if defined(__SSE2__) || defined(_M_X64)
#include <emmintrin.h>
#define CAMSEG_SSE2 1
#endif

/* AVX2 clones of the vectorisable loops where the toolchain can dispatch at run time */
#if defined(__GNUC__) && defined(__x86_64__) && defined(__linux__) && !defined(__clang__)
#define CAMSEG_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define CAMSEG_CLONES
#endif

#if defined(__GNUC__) || defined(__clang__)
#define CTZ64(x) __builtin_ctzll(x)
#else
static int CTZ64(uint64_t x) {
    int n = 0;
    while (!(x & 1)) { x >>= 1; n++; }
    return n;
}
#endif

/* ------------------------------------------------------------------ range */

CAMSEG_CLONES
static int range_one(const float *x, int64_t n, float *lo, float *hi) {
    /* (x - x) is 0 for finite x, NaN for NaN and infinity */
    float mn = x[0], mx = x[0];
    int64_t i = 0;
    int bad = 0;
#ifdef CAMSEG_SSE2
    if (n >= 4) {
        __m128 vmn = _mm_loadu_ps(x), vmx = vmn, vbad = _mm_setzero_ps();
        for (; i + 4 <= n; i += 4) {
            __m128 v = _mm_loadu_ps(x + i);
            vmn = _mm_min_ps(vmn, v);
            vmx = _mm_max_ps(vmx, v);
            vbad = _mm_or_ps(vbad, _mm_cmpneq_ps(_mm_sub_ps(v, v), _mm_setzero_ps()));
        }
        float a[4], b[4];
        _mm_storeu_ps(a, vmn);
        _mm_storeu_ps(b, vmx);
        mn = a[0]; mx = b[0];
        for (int k = 1; k < 4; k++) {
            mn = a[k] < mn ? a[k] : mn;
            mx = b[k] > mx ? b[k] : mx;
        }
        bad = _mm_movemask_ps(vbad) != 0;
    }
#endif
    for (; i < n; i++) {
        float v = x[i];
        mn = v < mn ? v : mn;
        mx = v > mx ? v : mx;
        bad |= (v - v) != 0.0f;
    }
    *lo = mn;
    *hi = mx;
    return bad || (mn - mn) != 0.0f || (mx - mx) != 0.0f;
}

/* ------------------------------------------------------------------ Otsu */

/* numpy.histogram's edges: linspace(lo, hi, nbins + 1) in float32, the last one set to hi */
static void make_edges(float lo, float hi, int nbins, float *e) {
    const float step = (hi - lo) / (float)nbins;
    for (int k = 0; k < nbins; k++) {
        float a = (float)k * step;
        e[k] = a + lo;
    }
    e[nbins] = hi;
}

/* numpy.histogram's bin of v: its guess, corrected by one bin against the edges */
static inline int32_t exact_bin(float v, float lo, float span, float fn, int last,
                                const float *edges) {
    int32_t k = (int32_t)(((v - lo) / span) * fn);
    k = k > last ? last : (k < 0 ? 0 : k);
    k -= (v < edges[k]);
    k += (k != last) & (v >= edges[k + 1]);
    return k;
}

#define BLOCK 256

/* the guessed bins of a block of pixels, and whether any lies near a boundary */
CAMSEG_CLONES
static int guess_bins(const float *x, int64_t m, float lo, float inv, float eps, int last,
                      int32_t *g, uint8_t *near) {
    int32_t any = 0;
    const float top = 1.0f - eps;
    for (int64_t i = 0; i < m; i++) {
        float f = (x[i] - lo) * inv;
        int32_t k = (int32_t)f;
        float r = f - (float)k;
        int32_t nr = (r < eps) | (r > top) | (k > last);
        g[i] = k > last ? last : k;
        near[i] = (uint8_t)nr;
        any |= nr;
    }
    return any;
}

/* Otsu's threshold of one image from its histogram (counts in `counts`) */
static float otsu_from_counts(const int64_t *counts, const float *edges, int nbins,
                              double *work) {
    double *cen = work, *suf = work + nbins;
    for (int k = 0; k < nbins; k++) cen[k] = (double)((edges[k] + edges[k + 1]) / 2.0f);
    double total = 0.0;
    for (int k = 0; k < nbins; k++) total += (double)counts[k];
    /* the upper class's moment, summed from the top bin down, as numpy's reversed cumsum */
    double acc = 0.0;
    for (int k = nbins - 1; k >= 1; k--) {
        acc += (double)counts[k] * cen[k];
        suf[k - 1] = acc;
    }
    double w1 = 0.0, m1 = 0.0, best = -1.0;
    int bi = 0;
    for (int k = 0; k < nbins - 1; k++) {
        w1 += (double)counts[k];
        m1 += (double)counts[k] * cen[k];
        double w2 = total - w1;
        double d = m1 / w1 - suf[k] / w2;
        double var = w1 * w2 * (d * d);
        /* the first maximum wins; a NaN (an empty class) would win in numpy.argmax */
        if (var > best || (var != var && best == best)) {
            best = var;
            bi = k;
            if (var != var) break;
        }
    }
    return (float)cen[bi];
}

static void histogram(const float *x, int64_t n, float lo, float hi, const float *edges,
                      int nbins, int64_t *counts, int64_t *sub, int32_t *g, uint8_t *near) {
    const float span = hi - lo;
    const float fn = (float)nbins;
    const int last = nbins - 1;
    const float inv = fn / span;
    /* bound, in bins, on the rounding of the guess and of numpy's edges */
    double big = fmax(fabs((double)lo), fabs((double)hi));
    double bound = 8.0 * FLT_EPSILON * big * nbins / span + 16.0 * FLT_EPSILON * nbins;
    int all_exact = !(bound < 0.125);
    float eps = (float)bound;
    memset(sub, 0, sizeof(int64_t) * 4 * (size_t)nbins);
    int64_t *s0 = sub, *s1 = sub + nbins, *s2 = sub + 2 * nbins, *s3 = sub + 3 * nbins;
    for (int64_t a = 0; a < n; a += BLOCK) {
        int64_t m = n - a < BLOCK ? n - a : BLOCK;
        const float *xa = x + a;
        if (all_exact) {
            for (int64_t i = 0; i < m; i++) g[i] = exact_bin(xa[i], lo, span, fn, last, edges);
        } else if (guess_bins(xa, m, lo, inv, eps, last, g, near)) {
            /* a few pixels per thousand: find them eight flags at a time */
            for (int64_t i = 0; i < m; i += 8) {
                uint64_t word = 0;
                memcpy(&word, near + i, 8);
                if (!word) continue;
                int64_t stop = i + 8 < m ? i + 8 : m;
                for (int64_t j = i; j < stop; j++)
                    if (near[j]) g[j] = exact_bin(xa[j], lo, span, fn, last, edges);
            }
        }
        /* four interleaved sub-histograms: runs of equal bins do not serialise on one counter */
        int64_t i = 0;
        for (; i + 4 <= m; i += 4) {
            s0[g[i]]++;
            s1[g[i + 1]]++;
            s2[g[i + 2]]++;
            s3[g[i + 3]]++;
        }
        for (; i < m; i++) s0[g[i]]++;
    }
    for (int k = 0; k < nbins; k++) counts[k] = s0[k] + s1[k] + s2[k] + s3[k];
}

CAMSEG_CLONES
static void compare_ge(const float *x, int64_t n, float t, uint8_t *out) {
    for (int64_t i = 0; i < n; i++) out[i] = x[i] >= t;
}

/* ------------------------------------------------------------ components */

typedef struct {
    int64_t parent, size;
    int32_t row, c0, c1;
} Run;

/* a growable table of runs, kept across the images of one call */
typedef struct {
    Run *runs;
    int64_t cap;
} RunTable;

/* room for at least `need` runs; -1 when memory is exhausted */
static int runs_reserve(RunTable *t, int64_t need) {
    if (need <= t->cap) return 0;
    int64_t cap = t->cap > 0 ? t->cap : 1024;
    while (cap < need) cap *= 2;
    Run *r = (Run *)realloc(t->runs, sizeof(Run) * (size_t)cap);
    if (!r) return -1;
    t->runs = r;
    t->cap = cap;
    return 0;
}

static inline int64_t find_root(Run *r, int64_t i) {
    while (r[i].parent != i) {
        r[i].parent = r[r[i].parent].parent;
        i = r[i].parent;
    }
    return i;
}

static inline void pack_row(const uint8_t *row, int64_t w, uint64_t *bits, int64_t nw) {
    memset(bits, 0, sizeof(uint64_t) * (size_t)nw);
    int64_t c = 0;
#ifdef CAMSEG_SSE2
    const __m128i zero = _mm_setzero_si128();
    for (; c + 16 <= w; c += 16) {
        __m128i v = _mm_loadu_si128((const __m128i *)(row + c));
        uint64_t m = (uint32_t)_mm_movemask_epi8(_mm_cmpgt_epi8(v, zero));
        bits[c >> 6] |= m << (c & 63);
    }
#endif
    for (; c < w; c++) bits[c >> 6] |= (uint64_t)(row[c] != 0) << (c & 63);
}

/* the first column >= c whose bit is `want`, or w */
static inline int64_t next_bit(const uint64_t *bits, int64_t nw, int64_t w, int64_t c, int want) {
    if (c >= w) return w;
    int64_t wi = c >> 6;
    uint64_t x = (want ? bits[wi] : ~bits[wi]) & (~0ULL << (c & 63));
    while (!x) {
        if (++wi >= nw) return w;
        x = want ? bits[wi] : ~bits[wi];
    }
    int64_t r = (wi << 6) + CTZ64(x);
    return r < w ? r : w;
}

/* remove the components smaller than min_size of one (h, w) mask, in place;
   -1 (mask untouched) when the run table cannot grow */
static int small_objects_one(uint8_t *m, int64_t h, int64_t w, int64_t min_size, int conn,
                             RunTable *table, uint64_t *bits) {
    int64_t nr = 0, pb = 0, pe = 0;
    const int64_t d = conn == 2 ? 1 : 0;
    const int64_t nw = (w + 63) >> 6;
    Run *runs = table->runs;
    for (int64_t r = 0; r < h; r++) {
        pack_row(m + r * w, w, bits, nw);
        int64_t cb = nr, p = pb;
        int64_t c = 0;
        for (;;) {
            int64_t s = next_bit(bits, nw, w, c, 1);
            if (s >= w) break;
            c = next_bit(bits, nw, w, s, 0);
            if (nr >= table->cap) {
                if (runs_reserve(table, nr + 1) < 0) return -1;
                runs = table->runs;
            }
            Run *cur = &runs[nr];
            cur->row = (int32_t)r;
            cur->c0 = (int32_t)s;
            cur->c1 = (int32_t)(c - 1);
            cur->parent = nr;
            cur->size = c - s;
            /* runs of the previous row are sorted: skip those wholly left of this one */
            while (p < pe && runs[p].c1 < s - d) p++;
            for (int64_t q = p; q < pe && runs[q].c0 <= c - 1 + d; q++) {
                int64_t a = find_root(runs, nr), b = find_root(runs, q);
                if (a != b) {
                    if (a > b) { int64_t t = a; a = b; b = t; }
                    runs[b].parent = a;
                    runs[a].size += runs[b].size;
                }
            }
            nr++;
        }
        pb = cb;
        pe = nr;
    }
    for (int64_t i = 0; i < nr; i++) {
        if (runs[find_root(runs, i)].size < min_size)
            memset(m + (int64_t)runs[i].row * w + runs[i].c0, 0,
                   (size_t)(runs[i].c1 - runs[i].c0 + 1));
    }
    return 0;
}

/* a first size for the run table: a few runs per row, never more than the worst case */
static int64_t initial_runs(int64_t h, int64_t w) {
    int64_t worst = h * ((w + 1) / 2) + 1, guess = 4 * h + 64;
    return guess < worst ? guess : worst;
}

/* ------------------------------------------------------------ Python glue */

/* the element a kernel reads from a buffer */
typedef enum { F32, U8, I64 } Elem;

/* a C-contiguous buffer of `obj` whose elements are `elem`; -1 with ValueError/TypeError */
static int get_buffer(PyObject *obj, Py_buffer *b, int writable, Elem elem, const char *what) {
    int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(obj, b, flags) < 0) return -1;
    const char *f = b->format ? b->format : "B";
    if (*f == '@' || *f == '=' || (*f == '<' && PY_LITTLE_ENDIAN)) f++;
    int ok;
    switch (elem) {
    case F32: ok = b->itemsize == 4 && strcmp(f, "f") == 0; break;
    case U8: ok = b->itemsize == 1 && (strcmp(f, "B") == 0 || strcmp(f, "?") == 0 ||
                                      strcmp(f, "b") == 0 || strcmp(f, "c") == 0); break;
    default: ok = b->itemsize == 8 && (strcmp(f, "q") == 0 || strcmp(f, "l") == 0); break;
    }
    if (!ok) {
        static const char *names[] = {"float32", "uint8 or bool", "int64"};
        PyErr_Format(PyExc_TypeError,
                     "camseg._cpu: expected buffer `%s` to hold %s elements, but got format "
                     "'%s' with %zd-byte items",
                     what, names[elem], b->format ? b->format : "B", b->itemsize);
        PyBuffer_Release(b);
        b->obj = NULL;
        return -1;
    }
    return 0;
}

static void release(Py_buffer *b) {
    if (b->obj) PyBuffer_Release(b);
}

/* h and w index rows and columns in 32 bits */
static int check_dims(Py_ssize_t h, Py_ssize_t w) {
    if (h > INT32_MAX || w > INT32_MAX) {
        PyErr_Format(PyExc_ValueError,
                     "camseg._cpu: masks of %zd x %zd pixels exceed the kernel's 2**31 - 1 "
                     "rows or columns", h, w);
        return -1;
    }
    return 0;
}

static int check_len(Py_buffer *b, Py_ssize_t need, const char *what) {
    if (b->len < need) {
        PyErr_Format(PyExc_ValueError, "camseg._cpu: buffer `%s` holds %zd bytes, needs %zd",
                     what, b->len, need);
        return -1;
    }
    return 0;
}

static PyObject *py_range_f32(PyObject *self, PyObject *args) {
    Py_buffer maps = {0}, lo = {0}, hi = {0};
    PyObject *maps_obj, *lo_obj, *hi_obj;
    Py_ssize_t b, n;
    (void)self;
    if (!PyArg_ParseTuple(args, "OnnOO", &maps_obj, &b, &n, &lo_obj, &hi_obj)) return NULL;
    PyObject *res = NULL;
    if (get_buffer(maps_obj, &maps, 0, F32, "maps") < 0 ||
        get_buffer(lo_obj, &lo, 1, F32, "lo") < 0 || get_buffer(hi_obj, &hi, 1, F32, "hi") < 0)
        goto done;
    if (b < 0 || n < 1 || check_len(&maps, b * n * 4, "maps") || check_len(&lo, b * 4, "lo") ||
        check_len(&hi, b * 4, "hi")) {
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "camseg._cpu: bad sizes");
        goto done;
    }
    int bad = 0;
    const float *x = (const float *)maps.buf;
    float *l = (float *)lo.buf, *u = (float *)hi.buf;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < b; i++) bad |= range_one(x + i * n, n, l + i, u + i);
    Py_END_ALLOW_THREADS
    res = PyBool_FromLong(bad);
done:
    release(&maps);
    release(&lo);
    release(&hi);
    return res;
}

/* scratch space of one thread's Otsu pass */
typedef struct {
    int64_t *counts, *sub;
    int32_t *g;
    uint8_t *near;
    double *work;
    float *edges;
    RunTable runs;
    uint64_t *bits;
} Scratch;

static void scratch_free(Scratch *s) {
    free(s->counts);
    free(s->sub);
    free(s->g);
    free(s->near);
    free(s->work);
    free(s->edges);
    free(s->runs.runs);
    free(s->bits);
}

static int scratch_alloc(Scratch *s, int nbins, int64_t h, int64_t w) {
    s->counts = (int64_t *)malloc(sizeof(int64_t) * (size_t)nbins);
    s->sub = (int64_t *)malloc(sizeof(int64_t) * 4 * (size_t)nbins);
    s->g = (int32_t *)malloc(sizeof(int32_t) * BLOCK);
    s->near = (uint8_t *)calloc(BLOCK + 8, 1);
    s->work = (double *)malloc(sizeof(double) * 2 * (size_t)nbins);
    s->edges = (float *)malloc(sizeof(float) * (size_t)(nbins + 1));
    s->runs.runs = NULL;
    s->runs.cap = 0;
    int runs_bad = runs_reserve(&s->runs, initial_runs(h, w));
    s->bits = (uint64_t *)malloc(sizeof(uint64_t) * (size_t)((w + 63) / 64));
    if (!s->counts || !s->sub || !s->g || !s->near || !s->work || !s->edges || runs_bad ||
        !s->bits) {
        scratch_free(s);
        return -1;
    }
    return 0;
}

static PyObject *py_otsu_f32(PyObject *self, PyObject *args) {
    Py_buffer maps = {0}, lo = {0}, hi = {0}, thr = {0}, keep = {0}, out = {0};
    Py_ssize_t b, h, w, min_size;
    int nbins, conn;
    PyObject *maps_obj, *keep_obj, *out_obj, *lo_obj, *hi_obj, *thr_obj;
    (void)self;
    if (!PyArg_ParseTuple(args, "OnnnOinOiOOO", &maps_obj, &b, &h, &w, &keep_obj, &nbins,
                          &min_size, &out_obj, &conn, &lo_obj, &hi_obj, &thr_obj))
        return NULL;
    PyObject *res = NULL;
    Scratch sc = {0};
    const int have_keep = keep_obj != Py_None, have_out = out_obj != Py_None;
    if (get_buffer(maps_obj, &maps, 0, F32, "maps") < 0 ||
        get_buffer(lo_obj, &lo, 1, F32, "lo") < 0 || get_buffer(hi_obj, &hi, 1, F32, "hi") < 0 ||
        get_buffer(thr_obj, &thr, 1, F32, "thr") < 0)
        goto release;
    if (have_keep && get_buffer(keep_obj, &keep, 0, U8, "keep") < 0) goto release;
    if (have_out && get_buffer(out_obj, &out, 1, U8, "out") < 0) goto release;
    if (check_dims(h, w) < 0) goto release;
    const Py_ssize_t n = h * w;
    if (b < 0 || h < 1 || w < 1 || nbins < 2 || check_len(&maps, b * n * 4, "maps") ||
        check_len(&lo, b * 4, "lo") || check_len(&hi, b * 4, "hi") ||
        check_len(&thr, b * 4, "thr") || (have_keep && check_len(&keep, b, "keep")) ||
        (have_out && check_len(&out, b * n, "out"))) {
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "camseg._cpu: bad sizes");
        goto release;
    }
    if (scratch_alloc(&sc, nbins, h, w) < 0) {
        PyErr_NoMemory();
        goto release;
    }
    int bad = 0, no_memory = 0;
    const float *x = (const float *)maps.buf;
    const uint8_t *k = have_keep ? (const uint8_t *)keep.buf : NULL;
    float *l = (float *)lo.buf, *u = (float *)hi.buf, *t = (float *)thr.buf;
    uint8_t *o = have_out ? (uint8_t *)out.buf : NULL;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < b; i++) {
        const float *xi = x + i * n;
        /* the range of every image (the caller validates it), then, while the image is
           in cache, the rest for the kept ones */
        int bad_i = range_one(xi, n, l + i, u + i);
        bad |= bad_i;
        t[i] = NAN;
        if (bad_i || (k && !k[i])) continue;
        if (l[i] == u[i]) {
            /* a constant map: Otsu returns its value, and its mask is empty */
            t[i] = l[i];
            if (o) memset(o + i * n, 0, (size_t)n);
            continue;
        }
        make_edges(l[i], u[i], nbins, sc.edges);
        histogram(xi, n, l[i], u[i], sc.edges, nbins, sc.counts, sc.sub, sc.g, sc.near);
        t[i] = otsu_from_counts(sc.counts, sc.edges, nbins, sc.work);
        if (o) {
            compare_ge(xi, n, t[i], o + i * n);
            if (min_size > 1 &&
                small_objects_one(o + i * n, h, w, min_size, conn, &sc.runs, sc.bits) < 0) {
                no_memory = 1;
                break;
            }
        }
    }
    Py_END_ALLOW_THREADS
    scratch_free(&sc);
    if (no_memory)
        PyErr_NoMemory();
    else
        res = PyBool_FromLong(bad);
release:
    release(&maps);
    release(&lo);
    release(&hi);
    release(&thr);
    release(&keep);
    release(&out);
    return res;
}

static PyObject *py_histogram_f32(PyObject *self, PyObject *args) {
    Py_buffer maps = {0}, counts = {0};
    PyObject *maps_obj, *counts_obj;
    Py_ssize_t b, n;
    int nbins;
    (void)self;
    if (!PyArg_ParseTuple(args, "OnniO", &maps_obj, &b, &n, &nbins, &counts_obj)) return NULL;
    PyObject *res = NULL;
    Scratch sc = {0};
    if (get_buffer(maps_obj, &maps, 0, F32, "maps") < 0 ||
        get_buffer(counts_obj, &counts, 1, I64, "counts") < 0)
        goto done;
    if (b < 0 || n < 1 || nbins < 2 || check_len(&maps, b * n * 4, "maps") ||
        check_len(&counts, b * nbins * 8, "counts")) {
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "camseg._cpu: bad sizes");
        goto done;
    }
    if (scratch_alloc(&sc, nbins, 1, 1) < 0) {
        PyErr_NoMemory();
        goto done;
    }
    const float *x = (const float *)maps.buf;
    int64_t *c = (int64_t *)counts.buf;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t j = 0; j < b; j++) {
        float lo, hi;
        int64_t *cj = c + j * nbins;
        /* a constant or non-finite row has no bins of its own (numpy widens a constant
           range); camseg never takes its histogram: zeros */
        if (range_one(x + j * n, n, &lo, &hi) || lo == hi) {
            memset(cj, 0, sizeof(int64_t) * (size_t)nbins);
            continue;
        }
        make_edges(lo, hi, nbins, sc.edges);
        histogram(x + j * n, n, lo, hi, sc.edges, nbins, cj, sc.sub, sc.g, sc.near);
    }
    Py_END_ALLOW_THREADS
    scratch_free(&sc);
    res = Py_NewRef(Py_None);
done:
    release(&maps);
    release(&counts);
    return res;
}

static PyObject *py_small_objects(PyObject *self, PyObject *args) {
    Py_buffer masks = {0};
    PyObject *masks_obj;
    Py_ssize_t b, h, w, min_size;
    int conn;
    (void)self;
    if (!PyArg_ParseTuple(args, "Onnnni", &masks_obj, &b, &h, &w, &min_size, &conn)) return NULL;
    PyObject *res = NULL;
    if (get_buffer(masks_obj, &masks, 1, U8, "masks") < 0 || check_dims(h, w) < 0) goto done;
    if (b < 0 || h < 1 || w < 1 || check_len(&masks, b * h * w, "masks")) {
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "camseg._cpu: bad sizes");
        goto done;
    }
    RunTable table = {NULL, 0};
    uint64_t *bits = (uint64_t *)malloc(sizeof(uint64_t) * (size_t)((w + 63) / 64));
    int failed = !bits || runs_reserve(&table, initial_runs(h, w)) < 0;
    if (!failed) {
        uint8_t *m = (uint8_t *)masks.buf;
        Py_BEGIN_ALLOW_THREADS
        for (Py_ssize_t i = 0; i < b && !failed; i++)
            failed = small_objects_one(m + i * h * w, h, w, min_size, conn, &table, bits) < 0;
        Py_END_ALLOW_THREADS
    }
    if (failed)
        PyErr_NoMemory();
    else
        res = Py_NewRef(Py_None);
    free(table.runs);
    free(bits);
done:
    release(&masks);
    return res;
}

static PyMethodDef methods[] = {
    {"range_f32", py_range_f32, METH_VARARGS,
     "range_f32(maps, b, n, lo, hi) -> bool: per-image min/max into lo, hi; True if any value "
     "is NaN or infinite."},
    {"otsu_f32", py_otsu_f32, METH_VARARGS,
     "otsu_f32(maps, b, h, w, keep, nbins, min_size, out, connectivity, lo, hi, thr) -> bool: "
     "the range of every image into lo, hi; for the kept ones (keep: uint8 (b,) or None for "
     "all) Otsu's threshold into thr (NaN elsewhere) and, with out (uint8, or None), the "
     "masks maps >= t with components smaller than min_size removed. True if any value is "
     "NaN or infinite."},
    {"histogram_f32", py_histogram_f32, METH_VARARGS,
     "histogram_f32(maps, b, n, nbins, counts): numpy.histogram's int64 counts of every row "
     "over its own range, into counts (b, nbins)."},
    {"small_objects", py_small_objects, METH_VARARGS,
     "small_objects(masks, b, h, w, min_size, connectivity): remove small components in place."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_cpu", "camseg's CPU kernels (see camseg._native).", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__cpu(void) { return PyModule_Create(&module); }
