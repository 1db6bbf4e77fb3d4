/* A read's run of template events to their text_deltas in one call (translate/stream.py, _run).
 *
 * plain_run(parts, k, prefix, suffix, head, tail): parts[:k] are a read's HTTP pieces, each expected
 * to be one template event: `prefix` + text + `suffix` (the learned envelope, as whole-read bytes:
 * b"data: {...\"content\":\"" ... "\"}...\n\n"). When every one of them is, and every text is
 * non-empty printable ASCII without a quote or a backslash (its JSON string body is the text itself),
 * the result is head + text1 + tail + head + text2 + tail + ...: what _run and _plain_run build in
 * Python for that read, byte for byte. Otherwise None, and the Python path (the reference) decides
 * the read as before: pieces not cut at events, texts that need escapes or are not ASCII, anything else.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>

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

static PyObject *
plain_run(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 6) {
        PyErr_SetString(PyExc_TypeError, "plain_run(parts, k, prefix, suffix, head, tail)");
        return NULL;
    }
    PyObject *parts = args[0];
    if (!PyList_CheckExact(parts)) {
        PyErr_SetString(PyExc_TypeError, "parts must be a list");
        return NULL;
    }
    Py_ssize_t k = PyLong_AsSsize_t(args[1]);
    if (k == -1 && PyErr_Occurred())
        return NULL;
    if (k < 1 || k > PyList_GET_SIZE(parts)) {
        PyErr_SetString(PyExc_ValueError, "k out of range");
        return NULL;
    }
    for (int i = 2; i < 6; i++) {
        if (!PyBytes_CheckExact(args[i])) {
            PyErr_SetString(PyExc_TypeError, "prefix, suffix, head and tail must be bytes");
            return NULL;
        }
    }
    const char *prefix = PyBytes_AS_STRING(args[2]), *suffix = PyBytes_AS_STRING(args[3]);
    const char *head = PyBytes_AS_STRING(args[4]), *tail = PyBytes_AS_STRING(args[5]);
    Py_ssize_t np = PyBytes_GET_SIZE(args[2]), ns = PyBytes_GET_SIZE(args[3]);
    Py_ssize_t nh = PyBytes_GET_SIZE(args[4]), nt = PyBytes_GET_SIZE(args[5]);

    /* First pass: every piece checked (nothing here calls back into Python, so the list and its
     * bytes stay as they are until the copy below), the output's size summed. */
    Py_ssize_t total = 0;
    for (Py_ssize_t i = 0; i < k; i++) {
        PyObject *piece = PyList_GET_ITEM(parts, i);
        if (!PyBytes_CheckExact(piece))
            Py_RETURN_NONE;
        Py_ssize_t n = PyBytes_GET_SIZE(piece);
        const char *s = PyBytes_AS_STRING(piece);
        if (n <= np + ns || memcmp(s, prefix, (size_t)np) != 0 || memcmp(s + n - ns, suffix, (size_t)ns) != 0)
            Py_RETURN_NONE;
        Py_ssize_t text = n - np - ns;
        if (!plain((const unsigned char *)s + np, text))
            Py_RETURN_NONE;
        if (text > PY_SSIZE_T_MAX - total - nh - nt)
            Py_RETURN_NONE; /* cannot happen for bytes in memory; the sum must not wrap */
        total += nh + text + nt;
    }
    PyObject *out = PyBytes_FromStringAndSize(NULL, total);
    if (out == NULL)
        return NULL;
    char *w = PyBytes_AS_STRING(out);
    for (Py_ssize_t i = 0; i < k; i++) {
        PyObject *piece = PyList_GET_ITEM(parts, i);
        Py_ssize_t text = PyBytes_GET_SIZE(piece) - np - ns;
        memcpy(w, head, (size_t)nh);
        w += nh;
        memcpy(w, PyBytes_AS_STRING(piece) + np, (size_t)text);
        w += text;
        memcpy(w, tail, (size_t)nt);
        w += nt;
    }
    return out;
}

static PyMethodDef methods[] = {
    {"plain_run", (PyCFunction)(void (*)(void))plain_run, METH_FASTCALL,
     "plain_run(parts, k, prefix, suffix, head, tail): the text_deltas of parts[:k], or None"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "anthropic_gateway.translate._run",
    .m_doc = "A read's run of template events to text_deltas (see _run.c).",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC
PyInit__run(void)
{
    /* INTERFACE: stream.py uses this build only when it says the interface it was written for */
    PyObject *m = PyModule_Create(&module);
    if (m != NULL && PyModule_AddIntConstant(m, "INTERFACE", 1) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
