/* The upstream's chunked body after its headers, one socket read per call (httpclient/connection.py).
 *
 * httptools (llhttp) calls back into Python for every HTTP chunk: on_chunk_header, on_body with a new
 * bytes, on_chunk_complete, ~820 instructions a chunk, and an upstream's stream is one chunk per SSE
 * event. Reader.feed(data, start) cuts one read into the chunks' payloads in one call and returns them
 * as a list, exactly as httptools' on_body would have delivered them (a chunk split across reads gives
 * a piece in each read; never an empty piece).
 *
 * It takes only the strict common form, a data chunk: 1..15 hex digits, CR LF, the data, CR LF. At
 * anything else at the start of a size line (the last chunk "0", an extension, whitespace, a bad
 * character, a line too long) it stops and sets `tail` to the bytes from that line's start: the
 * connection feeds them to httptools, whose parser is where this one began (at a size line, right
 * after the headers), so the last chunk, trailers, extensions and every framing error are httptools'
 * own, byte for byte. Bytes after a chunk's data that are not CR LF (llhttp accepts nothing else there)
 * stop it with tail b"\r": not a size line, so httptools raises its parser error as it would have.
 * After a stop the reader is not used again.
 *
 * Reader.run(data, start, template) takes a read's leading run of whole data chunks (size line, data
 * and CR LF all in this read) that are each one template event of the stream translator: `prefix` +
 * text + `suffix`, the text non-empty printable ASCII without a quote or a backslash (its JSON string
 * body is the text itself), as translate/_run.c's plain_run checks them. It returns (head + text1 +
 * tail + head + text2 + tail + ..., k, at): what plain_run builds from the k pieces feed() would have
 * cut, with no bytes per chunk, and the offset of the first byte it did not take; the reader is then
 * where it was (at a size line's start), and feed(data, at) takes the rest of the read. None, with
 * nothing taken, when the reader is not at a size line's start or the first chunk is not such an event.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#define MAX_DIGITS 15 /* a size below 2**60: no overflow, and llhttp takes it too */
#define SIZE_LINE_MAX (MAX_DIGITS + 1) /* the digits and the CR, kept across reads */

enum { S_LINE, S_DATA, S_CR, S_LF, S_STOPPED };

typedef struct {
    PyObject_HEAD
    int state;
    unsigned long long left; /* S_DATA: the chunk's data bytes still to come (>= 1) */
    unsigned long long value; /* S_LINE: the size so far */
    int digits; /* S_LINE: hex digits seen */
    int cr; /* S_LINE: the CR seen (the LF must follow) */
    Py_ssize_t line_len; /* S_LINE: bytes of the line that came in earlier reads, in `line` */
    char line[SIZE_LINE_MAX];
    PyObject *tail; /* None until the reader stops; then the bytes httptools must be fed */
} Reader;

static signed char HEX[256];

static int
stop(Reader *self, const char *saved, Py_ssize_t saved_len, const char *from, Py_ssize_t from_len)
{
    PyObject *tail = PyBytes_FromStringAndSize(NULL, saved_len + from_len);
    if (tail == NULL)
        return -1;
    if (saved_len)
        memcpy(PyBytes_AS_STRING(tail), saved, (size_t)saved_len);
    if (from_len)
        memcpy(PyBytes_AS_STRING(tail) + saved_len, from, (size_t)from_len);
    Py_SETREF(self->tail, tail);
    self->state = S_STOPPED;
    return 0;
}

static PyObject *
Reader_feed(Reader *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs < 1 || nargs > 2) {
        PyErr_SetString(PyExc_TypeError, "feed(data, start=0)");
        return NULL;
    }
    if (!PyBytes_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "feed() takes bytes");
        return NULL;
    }
    Py_ssize_t size = PyBytes_GET_SIZE(args[0]);
    Py_ssize_t start = 0;
    if (nargs == 2) {
        start = PyLong_AsSsize_t(args[1]);
        if (start == -1 && PyErr_Occurred())
            return NULL;
        if (start < 0 || start > size) {
            PyErr_SetString(PyExc_ValueError, "start out of range");
            return NULL;
        }
    }
    if (self->state == S_STOPPED) {
        PyErr_SetString(PyExc_RuntimeError, "the reader has stopped");
        return NULL;
    }
    /* `data` is a bytes: immutable, and held by the caller for the whole call. */
    const char *data = PyBytes_AS_STRING(args[0]);
    const char *p = data + start, *end = data + size;
    const char *line_start = p; /* S_LINE: where this read's part of the line begins */
    PyObject *pieces = PyList_New(0);
    if (pieces == NULL)
        return NULL;

    while (p < end) {
        switch (self->state) {
        case S_DATA: {
            Py_ssize_t avail = end - p;
            Py_ssize_t n = self->left < (unsigned long long)avail ? (Py_ssize_t)self->left : avail;
            PyObject *piece = PyBytes_FromStringAndSize(p, n);
            if (piece == NULL)
                goto fail;
            int err = PyList_Append(pieces, piece);
            Py_DECREF(piece);
            if (err < 0)
                goto fail;
            p += n;
            self->left -= (unsigned long long)n;
            if (self->left == 0)
                self->state = S_CR;
            break;
        }
        case S_CR:
        case S_LF:
            if (*p != (self->state == S_CR ? '\r' : '\n')) {
                if (stop(self, "\r", 1, NULL, 0) < 0) /* httptools' own parser error follows */
                    goto fail;
                return pieces;
            }
            p++;
            if (self->state == S_CR) {
                self->state = S_LF;
            } else {
                self->state = S_LINE;
                line_start = p;
            }
            break;
        case S_LINE: {
            unsigned char c = (unsigned char)*p;
            int h = HEX[c];
            if (!self->cr && h >= 0 && self->digits < MAX_DIGITS) {
                self->value = (self->value << 4) | (unsigned long long)h;
                self->digits++;
                p++;
            } else if (!self->cr && c == '\r' && self->digits > 0) {
                self->cr = 1;
                p++;
            } else if (self->cr && c == '\n' && self->value > 0) {
                p++;
                self->state = S_DATA;
                self->left = self->value;
                self->value = 0;
                self->digits = 0;
                self->cr = 0;
                self->line_len = 0;
            } else {
                /* not the strict form of a data chunk's size line: httptools takes it from its start */
                if (stop(self, self->line, self->line_len, line_start, end - line_start) < 0)
                    goto fail;
                return pieces;
            }
            break;
        }
        default:
            PyErr_SetString(PyExc_RuntimeError, "the reader is in no state");
            goto fail;
        }
    }
    if (self->state == S_LINE) {
        /* the line goes on in the next read: keep what this one held of it (accepted bytes only, so
         * at most SIZE_LINE_MAX in all) */
        Py_ssize_t n = end - line_start;
        if (n > SIZE_LINE_MAX - self->line_len) { /* cannot happen: each byte kept was accepted above */
            PyErr_SetString(PyExc_RuntimeError, "size line overflow");
            goto fail;
        }
        if (n > 0) {
            memcpy(self->line + self->line_len, line_start, (size_t)n);
            self->line_len += n;
        }
    }
    return pieces;
fail:
    Py_DECREF(pieces);
    return NULL;
}

static int
plain(const unsigned char *s, Py_ssize_t n)
{
    for (Py_ssize_t i = 0; i < n; i++) {
        unsigned char c = s[i];
        if (c < 0x20 || c >= 0x80 || c == '"' || c == '\\')
            return 0;
    }
    return 1;
}

/* The data chunk at p (a size line's start), all of it before end: its data's length (>= 1), *data
 * set to where the data begins; 0 when it is not whole in [p, end) or not the strict form feed()
 * takes (1..MAX_DIGITS hex digits, CR LF, the data, CR LF). */
static inline Py_ssize_t
whole_chunk(const char *p, const char *end, const char **data)
{
    unsigned long long value = 0;
    int digits = 0;
    int h;
    while (p < end && digits < MAX_DIGITS && (h = HEX[(unsigned char)*p]) >= 0) {
        value = (value << 4) | (unsigned long long)h;
        digits++;
        p++;
    }
    if (digits == 0 || value == 0 || end - p < 2 || p[0] != '\r' || p[1] != '\n')
        return 0;
    p += 2;
    Py_ssize_t avail = end - p;
    if (avail < 2 || value > (unsigned long long)(avail - 2))
        return 0;
    Py_ssize_t n = (Py_ssize_t)value;
    if (p[n] != '\r' || p[n + 1] != '\n')
        return 0;
    *data = p;
    return n;
}

#define RUN_MAX 256 /* events taken per call: a longer run's rest goes through feed() */

static PyObject *
Reader_run(Reader *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "run(data, start, template)");
        return NULL;
    }
    if (!PyBytes_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "run() takes bytes");
        return NULL;
    }
    Py_ssize_t size = PyBytes_GET_SIZE(args[0]);
    Py_ssize_t start = PyLong_AsSsize_t(args[1]);
    if (start == -1 && PyErr_Occurred())
        return NULL;
    if (start < 0 || start > size) {
        PyErr_SetString(PyExc_ValueError, "start out of range");
        return NULL;
    }
    PyObject *tpl = args[2];
    if (!PyTuple_CheckExact(tpl) || PyTuple_GET_SIZE(tpl) != 4) {
        PyErr_SetString(PyExc_TypeError, "template must be a tuple (prefix, suffix, head, tail)");
        return NULL;
    }
    for (int i = 0; i < 4; i++) {
        if (!PyBytes_CheckExact(PyTuple_GET_ITEM(tpl, i))) {
            PyErr_SetString(PyExc_TypeError, "template must be a tuple of four bytes");
            return NULL;
        }
    }
    if (self->state == S_STOPPED) {
        PyErr_SetString(PyExc_RuntimeError, "the reader has stopped");
        return NULL;
    }
    if (self->state != S_LINE || self->line_len || self->digits || self->cr)
        Py_RETURN_NONE; /* inside a chunk or a size line: feed() takes the read */
    PyObject *bp = PyTuple_GET_ITEM(tpl, 0), *bs = PyTuple_GET_ITEM(tpl, 1);
    PyObject *bh = PyTuple_GET_ITEM(tpl, 2), *bt = PyTuple_GET_ITEM(tpl, 3);
    const char *prefix = PyBytes_AS_STRING(bp), *suffix = PyBytes_AS_STRING(bs);
    const char *head = PyBytes_AS_STRING(bh), *tail = PyBytes_AS_STRING(bt);
    Py_ssize_t np = PyBytes_GET_SIZE(bp), ns = PyBytes_GET_SIZE(bs);
    Py_ssize_t nh = PyBytes_GET_SIZE(bh), nt = PyBytes_GET_SIZE(bt);
    /* `data` and the template are bytes (immutable) held by the caller; nothing here calls back into
     * Python between the check and the copy. */
    const char *data = PyBytes_AS_STRING(args[0]);
    const char *end = data + size, *p = data + start;
    const char *texts[RUN_MAX];
    Py_ssize_t lengths[RUN_MAX];
    Py_ssize_t k = 0, total = 0;
    while (p < end && k < RUN_MAX) {
        const char *s = NULL;
        Py_ssize_t n = whole_chunk(p, end, &s);
        if (n <= np + ns || memcmp(s, prefix, (size_t)np) != 0 || memcmp(s + n - ns, suffix, (size_t)ns) != 0)
            break;
        Py_ssize_t text = n - np - ns;
        if (!plain((const unsigned char *)s + np, text))
            break;
        if (text > PY_SSIZE_T_MAX - total - nh - nt)
            break; /* cannot happen for bytes in memory; the sum must not wrap */
        total += nh + text + nt;
        texts[k] = s + np;
        lengths[k] = text;
        k++;
        p = s + n + 2;
    }
    if (k == 0)
        Py_RETURN_NONE;
    PyObject *out = PyBytes_FromStringAndSize(NULL, total);
    if (out == NULL)
        return NULL;
    char *w = PyBytes_AS_STRING(out);
    for (Py_ssize_t i = 0; i < k; i++) {
        memcpy(w, head, (size_t)nh);
        w += nh;
        memcpy(w, texts[i], (size_t)lengths[i]);
        w += lengths[i];
        memcpy(w, tail, (size_t)nt);
        w += nt;
    }
    return Py_BuildValue("(Nnn)", out, k, (Py_ssize_t)(p - data));
}

static int
Reader_init(Reader *self, PyObject *args, PyObject *kwds)
{
    if (PyTuple_GET_SIZE(args) || (kwds && PyDict_GET_SIZE(kwds))) {
        PyErr_SetString(PyExc_TypeError, "Reader() takes no arguments");
        return -1;
    }
    self->state = S_LINE;
    self->left = self->value = 0;
    self->digits = self->cr = 0;
    self->line_len = 0;
    Py_INCREF(Py_None);
    Py_XSETREF(self->tail, Py_None);
    return 0;
}

static PyObject *
Reader_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    Reader *self = (Reader *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    self->state = S_LINE;
    Py_INCREF(Py_None);
    self->tail = Py_None;
    return (PyObject *)self;
}

static void
Reader_dealloc(Reader *self)
{
    Py_XDECREF(self->tail);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *
Reader_get_tail(Reader *self, void *closure)
{
    return Py_NewRef(self->tail);
}

static PyMethodDef Reader_methods[] = {
    {"feed", (PyCFunction)(void (*)(void))Reader_feed, METH_FASTCALL,
     "feed(data, start=0): the chunk payloads in data[start:], as httptools' on_body would give them"},
    {"run", (PyCFunction)(void (*)(void))Reader_run, METH_FASTCALL,
     "run(data, start, (prefix, suffix, head, tail)): the leading run of whole template events in "
     "data[start:] as (text_deltas, k, at), or None"},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Reader_getset[] = {
    {"tail", (getter)Reader_get_tail, NULL, "None, or the bytes httptools must be fed once the reader stopped", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject ReaderType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "anthropic_gateway.httpclient._chunks.Reader",
    .tp_basicsize = sizeof(Reader),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "One chunked body's reader, from right after the headers (see the module's docstring).",
    .tp_new = Reader_new,
    .tp_init = (initproc)Reader_init,
    .tp_dealloc = (destructor)Reader_dealloc,
    .tp_methods = Reader_methods,
    .tp_getset = Reader_getset,
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "anthropic_gateway.httpclient._chunks",
    .m_doc = "The chunked body's payloads per socket read (see _chunks.c).",
    .m_size = -1,
};

PyMODINIT_FUNC
PyInit__chunks(void)
{
    for (int i = 0; i < 256; i++)
        HEX[i] = -1;
    for (int i = 0; i < 10; i++)
        HEX['0' + i] = (signed char)i;
    for (int i = 0; i < 6; i++) {
        HEX['a' + i] = (signed char)(10 + i);
        HEX['A' + i] = (signed char)(10 + i);
    }
    if (PyType_Ready(&ReaderType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    /* INTERFACE: connection.py uses this build only when it says the interface it was written for */
    if (PyModule_AddObjectRef(m, "Reader", (PyObject *)&ReaderType) < 0
        || PyModule_AddIntConstant(m, "INTERFACE", 2) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
