/* sidecar.exporter._scatter: the nodes' texts into the scrape body (issue 15).
 *
 * The compiled form of sidecar.exporter.exposition._scatter_py (the same
 * arguments, the same bytes, the same errors; tests/exporter/test_render_builds.py
 * runs both on the same vectors and on random ones).  write_texts() calls it
 * once per scrape: each family block of each node's text, its stand-ins
 * expanded, is copied to its family's place in the body, without a Python
 * object per block, and with the GIL released meanwhile (a scrape of 300
 * nodes copies 13 MB: the event loop collecting the nodes goes on).  Every
 * offset is checked before a byte is written: arguments that disagree raise
 * ValueError and write nothing outside ``out``.
 *
 *   scatter(out, cursors, nodes) -> None
 *
 *   out      bytearray: the body, of its final size
 *   cursors  array('Q'): per family of the body, where its next block goes
 *            (advanced by each block written)
 *   nodes    a list of (body, labels, starts, plan), one per node, in order:
 *     body     bytes: the node's text with stand-ins (bytes 1..4)
 *     labels   None (the text is written as it is) or a tuple of four bytes:
 *              what bytes 1, 2, 3 and 4 stand for
 *     starts   array('I'): where each family block starts in the expanded
 *              text, and the last ends (len(plan) + 1 offsets)
 *     plan     array('I'): per family block of the node, its family in the body
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#ifndef SOURCE_SHA256
#define SOURCE_SHA256 ""
#endif

typedef struct {
    /* what the node's buffers hold, read without the GIL */
    const unsigned char *body;
    Py_ssize_t body_len;
    const uint32_t *starts;
    Py_ssize_t n_starts;
    const uint32_t *plan;
    Py_ssize_t n_plan;
    int expand;
    const char *label[4];
    Py_ssize_t label_len[4];
    /* the node's tuple (its labels live in it) and buffers, released at the end */
    PyObject *item;
    Py_buffer views[3];
    int held;
} Node;

static int is_stand_in(unsigned char c) { return c >= 1 && c <= 4; }

/* One node's blocks into out; NULL, or what disagrees. */
static const char *scatter_one(const Node *node, char *out, Py_ssize_t out_len, uint64_t *cursors,
                               Py_ssize_t n_cursors) {
    const unsigned char *src = node->body;
    const unsigned char *const src_end = src + node->body_len;
    const uint32_t *starts = node->starts;
    const uint32_t *plan = node->plan;
    const int expand = node->expand;

    if (src < (const unsigned char *)out + out_len && (const unsigned char *)out < src_end) {
        return "body: inside out";
    }
    if (node->n_starts != node->n_plan + 1 || starts[0] != 0) {
        return "starts: len(plan) + 1 offsets from 0 expected";
    }
    for (Py_ssize_t i = 0; i < node->n_plan; i++) {
        if (starts[i + 1] < starts[i]) {
            return "starts: offsets go back";
        }
        const uint64_t n = starts[i + 1] - starts[i];
        uint64_t at = 0;
        char *dst = NULL;
        if (n) {
            if ((Py_ssize_t)plan[i] >= n_cursors) {
                return "plan: a family beyond cursors";
            }
            at = cursors[plan[i]];
            if (at > (uint64_t)out_len || n > (uint64_t)out_len - at) {
                return "a block beyond the end of out";
            }
            dst = out + at;
        }
        uint64_t left = n;
        for (;;) {
            if (expand && src < src_end && is_stand_in(*src)) {
                const Py_ssize_t len = node->label_len[*src - 1];
                if ((uint64_t)len > left) {
                    if (!left) {
                        break; /* the next block's */
                    }
                    return "body: a stand-in across the end of a block";
                }
                if (len) {
                    memcpy(dst, node->label[*src - 1], (size_t)len);
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
                return "body: shorter than starts say";
            }
            /* a run of plain bytes, up to the next stand-in or the block's end */
            const unsigned char *run = src;
            const unsigned char *limit = (uint64_t)(src_end - src) < left ? src_end : src + left;
            if (expand) {
                /* eight bytes at a time while none is below 5 (stand-ins are
                 * a few a line), then byte by byte */
                while (limit - run >= 8) {
                    uint64_t word;
                    memcpy(&word, run, 8);
                    if ((word - 0x0505050505050505ULL) & ~word & 0x8080808080808080ULL) {
                        break;
                    }
                    run += 8;
                }
                while (run < limit && !is_stand_in(*run)) {
                    run++;
                }
            } else {
                run = limit;
            }
            const size_t len = (size_t)(run - src);
            memcpy(dst, src, len);
            dst += len;
            left -= len;
            src = run;
        }
        if (n) {
            cursors[plan[i]] = at + n;
        }
    }
    /* stand-ins for nothing (an empty label value) after the last block */
    while (expand && src < src_end && is_stand_in(*src) && !node->label_len[*src - 1]) {
        src++;
    }
    return src == src_end ? NULL : "body: longer than starts say";
}

static int get_view(PyObject *obj, Py_buffer *buf, int flags, Py_ssize_t itemsize,
                    const char *what) {
    if (PyObject_GetBuffer(obj, buf, flags) < 0) {
        return -1;
    }
    if (itemsize && (buf->itemsize != itemsize || buf->len % itemsize)) {
        PyBuffer_Release(buf);
        PyErr_Format(PyExc_ValueError, "%s: items of %zd bytes expected", what, itemsize);
        return -1;
    }
    return 0;
}

/* The node's buffers and labels, with the GIL; -1 with an exception set. */
static int take_node(PyObject *item, Node *node) {
    if (!PyTuple_Check(item) || PyTuple_GET_SIZE(item) != 4) {
        PyErr_SetString(PyExc_ValueError, "nodes: tuples (body, labels, starts, plan) expected");
        return -1;
    }
    Py_INCREF(item);
    node->item = item;
    PyObject *labels = PyTuple_GET_ITEM(item, 1);
    node->expand = labels != Py_None;
    if (node->expand) {
        if (!PyTuple_Check(labels) || PyTuple_GET_SIZE(labels) != 4) {
            PyErr_SetString(PyExc_ValueError, "labels: None or a tuple of four bytes");
            return -1;
        }
        for (int i = 0; i < 4; i++) {
            PyObject *label = PyTuple_GET_ITEM(labels, i);
            if (!PyBytes_Check(label)) {
                PyErr_SetString(PyExc_ValueError, "labels: None or a tuple of four bytes");
                return -1;
            }
            /* immutable, and kept alive by the tuple the caller holds */
            node->label[i] = PyBytes_AS_STRING(label);
            node->label_len[i] = PyBytes_GET_SIZE(label);
        }
    }
    if (get_view(PyTuple_GET_ITEM(item, 0), &node->views[0], PyBUF_SIMPLE, 0, "body") < 0) {
        return -1;
    }
    node->held = 1;
    if (get_view(PyTuple_GET_ITEM(item, 2), &node->views[1], PyBUF_FORMAT, 4, "starts") < 0) {
        return -1;
    }
    node->held = 2;
    if (get_view(PyTuple_GET_ITEM(item, 3), &node->views[2], PyBUF_FORMAT, 4, "plan") < 0) {
        return -1;
    }
    node->held = 3;
    node->body = (const unsigned char *)node->views[0].buf;
    node->body_len = node->views[0].len;
    node->starts = (const uint32_t *)node->views[1].buf;
    node->n_starts = node->views[1].len / 4;
    node->plan = (const uint32_t *)node->views[2].buf;
    node->n_plan = node->views[2].len / 4;
    return 0;
}

static PyObject *scatter(PyObject *self, PyObject *args) {
    PyObject *out_o, *cursors_o, *nodes_o;
    if (!PyArg_ParseTuple(args, "OOO:scatter", &out_o, &cursors_o, &nodes_o)) {
        return NULL;
    }
    PyObject *items = PySequence_Fast(nodes_o, "nodes: a sequence expected");
    if (items == NULL) {
        return NULL;
    }
    const Py_ssize_t count = PySequence_Fast_GET_SIZE(items);
    Py_buffer out_view, cursors_view;
    int out_held = 0, cursors_held = 0;
    Node *nodes = NULL;
    Py_ssize_t taken = 0;
    const char *error = NULL;
    PyObject *result = NULL;

    if (get_view(out_o, &out_view, PyBUF_WRITABLE, 0, "out") < 0) {
        goto done;
    }
    out_held = 1;
    if (get_view(cursors_o, &cursors_view, PyBUF_WRITABLE | PyBUF_FORMAT, 8, "cursors") < 0) {
        goto done;
    }
    cursors_held = 1;
    nodes = PyMem_Calloc(count ? (size_t)count : 1, sizeof(Node));
    if (nodes == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    PyObject **item = PySequence_Fast_ITEMS(items);
    for (; taken < count; taken++) {
        if (take_node(item[taken], &nodes[taken]) < 0) {
            taken++; /* its buffers taken so far are released below */
            goto done;
        }
    }
    char *out = (char *)out_view.buf;
    const Py_ssize_t out_len = out_view.len;
    uint64_t *cursors = (uint64_t *)cursors_view.buf;
    const Py_ssize_t n_cursors = cursors_view.len / 8;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < count && !error; i++) {
        error = scatter_one(&nodes[i], out, out_len, cursors, n_cursors);
    }
    Py_END_ALLOW_THREADS
    if (error) {
        PyErr_SetString(PyExc_ValueError, error);
        goto done;
    }
    result = Py_None;
    Py_INCREF(result);
done:
    for (Py_ssize_t i = 0; i < taken; i++) {
        for (int v = 0; v < nodes[i].held; v++) {
            PyBuffer_Release(&nodes[i].views[v]);
        }
        Py_XDECREF(nodes[i].item);
    }
    PyMem_Free(nodes);
    if (cursors_held) {
        PyBuffer_Release(&cursors_view);
    }
    if (out_held) {
        PyBuffer_Release(&out_view);
    }
    Py_DECREF(items);
    return result;
}

static PyMethodDef methods[] = {
    {"scatter", scatter, METH_VARARGS,
     "scatter(out, cursors, nodes): each node's family blocks, expanded, each at its "
     "family's cursor in out (nodes: (body, labels, starts, plan) tuples)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "sidecar.exporter._scatter",
    "The nodes' texts into the scrape body (see _scatter_py in exposition.py).", -1, methods,
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
