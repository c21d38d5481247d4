/* sidecar.exporter._scatter: one node's text into the scrape body (issue 15).
 *
 * The compiled form of sidecar.exporter.exposition._scatter_py (the same
 * arguments, the same bytes, the same errors; tests/exporter/test_render_builds.py
 * runs both on the same vectors and on random ones).  write_texts() calls it
 * once per node: each family block of the node's text, its stand-ins expanded,
 * is copied to its family's place in the body, without a Python object per
 * block.  Every offset is checked before a byte is written: inconsistent
 * arguments raise ValueError and write nothing outside ``out``.
 *
 *   scatter(out, cursors, body, labels, starts, plan) -> None
 *
 *   out      bytearray: the body, of its final size
 *   cursors  array('Q'): per family of the body, where its next block goes
 *            (advanced by each block written)
 *   body     bytes: the node's text with stand-ins (bytes 1..4)
 *   labels   None (the text is written as it is) or a tuple of four bytes:
 *            what bytes 1, 2, 3 and 4 stand for
 *   starts   array('I'): where each family block starts in the expanded
 *            text, and the last ends (len(plan) + 1 offsets)
 *   plan     array('I'): per family block of the node, its family in the body
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#ifndef SOURCE_SHA256
#define SOURCE_SHA256 ""
#endif

typedef struct {
    Py_buffer out, cursors, body, starts, plan;
    int held[5];
} Views;

static void release(Views *v) {
    Py_buffer *all[5] = {&v->out, &v->cursors, &v->body, &v->starts, &v->plan};
    for (int i = 0; i < 5; i++) {
        if (v->held[i]) {
            PyBuffer_Release(all[i]);
            v->held[i] = 0;
        }
    }
}

static int view(PyObject *obj, Py_buffer *buf, int *held, int flags, Py_ssize_t itemsize,
                const char *what) {
    if (PyObject_GetBuffer(obj, buf, flags) < 0) {
        return -1;
    }
    *held = 1;
    if (itemsize && (buf->itemsize != itemsize || buf->len % itemsize)) {
        PyErr_Format(PyExc_ValueError, "%s: items of %zd bytes expected", what, itemsize);
        return -1;
    }
    return 0;
}

static PyObject *scatter(PyObject *self, PyObject *args) {
    PyObject *out_o, *cursors_o, *body_o, *labels_o, *starts_o, *plan_o;
    if (!PyArg_ParseTuple(args, "OOOOOO:scatter", &out_o, &cursors_o, &body_o, &labels_o,
                          &starts_o, &plan_o)) {
        return NULL;
    }
    const char *label[4] = {NULL, NULL, NULL, NULL};
    Py_ssize_t label_len[4] = {0, 0, 0, 0};
    int expand = labels_o != Py_None;
    if (expand) {
        if (!PyTuple_Check(labels_o) || PyTuple_GET_SIZE(labels_o) != 4) {
            PyErr_SetString(PyExc_ValueError, "labels: None or a tuple of four bytes");
            return NULL;
        }
        for (int i = 0; i < 4; i++) {
            PyObject *item = PyTuple_GET_ITEM(labels_o, i);
            if (!PyBytes_Check(item)) {
                PyErr_SetString(PyExc_ValueError, "labels: None or a tuple of four bytes");
                return NULL;
            }
            label[i] = PyBytes_AS_STRING(item);
            label_len[i] = PyBytes_GET_SIZE(item);
        }
    }
    Views v;
    memset(&v, 0, sizeof v);
    if (view(out_o, &v.out, &v.held[0], PyBUF_WRITABLE, 0, "out") < 0 ||
        view(cursors_o, &v.cursors, &v.held[1], PyBUF_WRITABLE | PyBUF_FORMAT, 8, "cursors") < 0 ||
        view(body_o, &v.body, &v.held[2], PyBUF_SIMPLE, 0, "body") < 0 ||
        view(starts_o, &v.starts, &v.held[3], PyBUF_FORMAT, 4, "starts") < 0 ||
        view(plan_o, &v.plan, &v.held[4], PyBUF_FORMAT, 4, "plan") < 0) {
        release(&v);
        return NULL;
    }
    char *out = (char *)v.out.buf;
    const Py_ssize_t out_len = v.out.len;
    uint64_t *cursors = (uint64_t *)v.cursors.buf;
    const Py_ssize_t n_cursors = v.cursors.len / 8;
    const unsigned char *src = (const unsigned char *)v.body.buf;
    const unsigned char *const src_end = src + v.body.len;
    const uint32_t *starts = (const uint32_t *)v.starts.buf;
    const Py_ssize_t n_starts = v.starts.len / 4;
    const uint32_t *plan = (const uint32_t *)v.plan.buf;
    const Py_ssize_t n_plan = v.plan.len / 4;
    const char *error = NULL;

    if (n_starts != n_plan + 1 || starts[0] != 0) {
        error = "starts: len(plan) + 1 offsets from 0 expected";
        goto done;
    }
    for (Py_ssize_t i = 0; i < n_plan && !error; i++) {
        if (starts[i + 1] < starts[i]) {
            error = "starts: offsets go back";
            break;
        }
        const uint64_t n = starts[i + 1] - starts[i];
        uint64_t at = 0;
        char *dst = NULL;
        if (n) {
            if ((Py_ssize_t)plan[i] >= n_cursors) {
                error = "plan: a family beyond cursors";
                break;
            }
            at = cursors[plan[i]];
            if (at > (uint64_t)out_len || n > (uint64_t)out_len - at) {
                error = "a block beyond the end of out";
                break;
            }
            dst = out + at;
        }
        uint64_t left = n;
        for (;;) {
            if (expand && src < src_end && *src >= 1 && *src <= 4) {
                const Py_ssize_t len = label_len[*src - 1];
                if ((uint64_t)len > left) {
                    if (!left) {
                        break; /* the next block's */
                    }
                    error = "body: a stand-in across the end of a block";
                    break;
                }
                if (len) {
                    memcpy(dst, label[*src - 1], (size_t)len);
                    dst += len;
                    left -= (uint64_t)len;
                }
                src++;
                continue;
            }
            if (!left) {
                break;
            }
            if (src == src_end) {
                error = "body: shorter than starts say";
                break;
            }
            /* a run of plain bytes, up to the next stand-in or the block's end */
            const unsigned char *run = src;
            const unsigned char *limit =
                (uint64_t)(src_end - src) < left ? src_end : src + left;
            if (expand) {
                while (run < limit && (*run < 1 || *run > 4)) {
                    run++;
                }
            } else {
                run = limit;
            }
            const size_t len = (size_t)(run - src);
            memmove(dst, src, len); /* out may be body: never undefined */
            dst += len;
            left -= len;
            src = run;
        }
        if (!error && n) {
            cursors[plan[i]] = at + n;
        }
    }
    /* stand-ins for nothing (an empty label value) after the last block */
    while (!error && expand && src < src_end && *src >= 1 && *src <= 4 && !label_len[*src - 1]) {
        src++;
    }
    if (!error && src != src_end) {
        error = "body: longer than starts say";
    }
done:
    release(&v);
    if (error) {
        PyErr_SetString(PyExc_ValueError, error);
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"scatter", scatter, METH_VARARGS,
     "scatter(out, cursors, body, labels, starts, plan): one node's family blocks, "
     "expanded, each at its family's cursor in out"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "sidecar.exporter._scatter",
    "One node's text into the scrape body (see _scatter_py in exposition.py).", -1, methods,
};

PyMODINIT_FUNC PyInit__scatter(void) {
    PyObject *m = PyModule_Create(&module);
    if (m == NULL) {
        return NULL;
    }
    if (PyModule_AddStringConstant(m, "_SOURCE_SHA256", SOURCE_SHA256) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
