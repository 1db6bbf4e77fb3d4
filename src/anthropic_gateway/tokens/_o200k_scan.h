/* o200k's split pattern by hand, for one string kind: included by _o200k.c once per character width
 * with SCAN_CHAR (Py_UCS1, Py_UCS2, Py_UCS4) and SCAN_NAME(name) defined.
 *
 * The pattern (tiktoken_ext/openai_public.py, vocab.py's _O200K_PATTERN) is seven alternatives, tried
 * in order at each position with leftmost-first backtracking semantics (fancy_regex, as tiktoken runs
 * it); every character starts a match of one of them, so the pieces cover the text:
 *
 *   1  [^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?
 *   2  [^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?
 *   3  \p{N}{1,3}
 *   4   ?[^\s\p{L}\p{N}]+[\r\n/]*
 *   5  \s*[\r\n]+
 *   6  \s+(?!\S)
 *   7  \s+
 *
 * With A, B, C the three classes of 1 and 2 (the header's bits): B and C overlap in Lm, Lo and M, and
 * A overlaps both in M, so the backtracking matters and is spelled out below.
 */

#define SCAN_MASK(c) o200k_mask((Py_UCS4)(c))

/* The optional contraction after a word, (?i:'s|'t|'re|'ve|'m|'ll|'d): its length at e, or 0.
 * Unicode case folding (Rust's (?i)) adds U+017F LATIN SMALL LETTER LONG S for 's', nothing else. */
static inline Py_ssize_t
SCAN_NAME(contraction)(const SCAN_CHAR *s, Py_ssize_t n, Py_ssize_t e)
{
    if (e + 1 >= n || s[e] != '\'')
        return 0;
    Py_UCS4 c1 = s[e + 1];
    if (c1 < 128)
        c1 |= 0x20; /* ASCII lower case; letters only compared below */
    switch (c1) {
    case 's': case 't': case 'm': case 'd': case 0x17F:
        return 2;
    case 'r': case 'v': case 'l': {
        if (e + 2 >= n)
            return 0;
        Py_UCS4 c2 = s[e + 2];
        if (c2 < 128)
            c2 |= 0x20;
        if ((c1 == 'r' || c1 == 'v') ? c2 == 'e' : c2 == 'l')
            return 3;
        return 0;
    }
    default:
        return 0;
    }
}

/* Alternatives 1 and 2 at p: the end of the word, or -1. */
static inline Py_ssize_t
SCAN_NAME(word)(const SCAN_CHAR *s, Py_ssize_t n, Py_ssize_t p, unsigned m0)
{
    const int prefix = (m0 & O200K_M_A) != 0;
    /* 1: A? B* C+  - A? greedy (with the prefix first, then without), B* greedy backtracking. */
    for (int a = prefix; a >= 0; a--) {
        Py_ssize_t q = p + a;
        Py_ssize_t j = q;
        while (j < n && (SCAN_MASK(s[j]) & O200K_M_B))
            j++;
        Py_ssize_t e = -1;
        if (j < n && (SCAN_MASK(s[j]) & O200K_M_C)) {
            /* not in B, in C: Ll. C+ takes its whole run. */
            e = j + 1;
            while (e < n && (SCAN_MASK(s[e]) & O200K_M_C))
                e++;
        }
        else {
            /* B* gives back characters until the next one is in C: the last of the run in B and C
             * (Lm, Lo, M). C+ is that one character (the ones after it are Lu/Lt, then not C). */
            for (Py_ssize_t k = j - 1; k >= q; k--) {
                if (SCAN_MASK(s[k]) & O200K_M_C) {
                    e = k + 1;
                    break;
                }
            }
        }
        if (e >= 0)
            return e + SCAN_NAME(contraction)(s, n, e);
    }
    /* 2: A? B+ C*  - no backtracking needed past A?: C* may be empty. */
    for (int a = prefix; a >= 0; a--) {
        Py_ssize_t q = p + a;
        Py_ssize_t e = q;
        while (e < n && (SCAN_MASK(s[e]) & O200K_M_B))
            e++;
        if (e > q) {
            while (e < n && (SCAN_MASK(s[e]) & O200K_M_C))
                e++;
            return e + SCAN_NAME(contraction)(s, n, e);
        }
    }
    return -1;
}

/* The end of the piece that starts at p (p < n). */
static inline Py_ssize_t
SCAN_NAME(next_piece)(const SCAN_CHAR *s, Py_ssize_t n, Py_ssize_t p)
{
    const unsigned m0 = SCAN_MASK(s[p]);
    if (m0 & (O200K_M_A | O200K_M_B | O200K_M_C)) {
        /* 1 and 2 need a B or C character at p or, after a prefix, at p + 1. */
        Py_ssize_t e = SCAN_NAME(word)(s, n, p, m0);
        if (e >= 0)
            return e;
    }
    if (m0 & O200K_M_N) { /* 3 */
        Py_ssize_t e = p + 1;
        while (e < n && e < p + 3 && (SCAN_MASK(s[e]) & O200K_M_N))
            e++;
        return e;
    }
    /* 4: " ?" greedy: the space is taken only if O+ can follow it (a space is not in O). */
    Py_ssize_t q = -1;
    if (s[p] == ' ' && p + 1 < n && (SCAN_MASK(s[p + 1]) & O200K_M_O))
        q = p + 1;
    else if (m0 & O200K_M_O)
        q = p;
    if (q >= 0) {
        Py_ssize_t e = q + 1;
        while (e < n && (SCAN_MASK(s[e]) & O200K_M_O))
            e++;
        while (e < n && (s[e] == '\r' || s[e] == '\n' || s[e] == '/'))
            e++;
        return e;
    }
    if (m0 & O200K_M_S) {
        Py_ssize_t e = p + 1, last_newline = (m0 & O200K_M_NL) ? p : -1;
        while (e < n) {
            unsigned m = SCAN_MASK(s[e]);
            if (!(m & O200K_M_S))
                break;
            if (m & O200K_M_NL)
                last_newline = e;
            e++;
        }
        /* 5: \s* backtracks to the run's last newline, and [\r\n]+ is that one character. */
        if (last_newline >= 0)
            return last_newline + 1;
        /* 6: the whole run at the end of the text, else all but its last character (if that leaves
         * any), which then starts the next piece (usually as a word's prefix). */
        if (e == n)
            return e;
        if (e - p >= 2)
            return e - 1;
        return e; /* 7 */
    }
    return p + 1; /* not reached: every class is covered above */
}

/* The count of text[0:n]: tokens of every piece. Returns -1 (out of memory) or -2 (a surrogate:
 * the caller repairs the text as tiktoken does and counts again). */
static Py_ssize_t
SCAN_NAME(count)(const Table *t, const SCAN_CHAR *s, Py_ssize_t n, Scratch *w)
{
    Py_ssize_t total = 0;
    Py_ssize_t p = 0;
    while (p < n) {
        Py_ssize_t e = SCAN_NAME(next_piece)(s, n, p);
        const uint8_t *bytes;
        Py_ssize_t len;
#if SCAN_ASCII
        bytes = (const uint8_t *)s + p;
        len = e - p;
#else
        if (scratch_reserve(&w->utf8, &w->utf8_cap, (size_t)(e - p) * sizeof(SCAN_CHAR) * 2) < 0)
            return -1;
        uint8_t *o = (uint8_t *)w->utf8;
        for (Py_ssize_t i = p; i < e; i++) {
            Py_UCS4 c = s[i];
            if (c < 0x80) {
                *o++ = (uint8_t)c;
            }
            else if (c < 0x800) {
                *o++ = (uint8_t)(0xC0 | (c >> 6));
                *o++ = (uint8_t)(0x80 | (c & 0x3F));
            }
            else if (c < 0x10000) {
                if (c >= 0xD800 && c <= 0xDFFF)
                    return -2;
                *o++ = (uint8_t)(0xE0 | (c >> 12));
                *o++ = (uint8_t)(0x80 | ((c >> 6) & 0x3F));
                *o++ = (uint8_t)(0x80 | (c & 0x3F));
            }
            else {
                *o++ = (uint8_t)(0xF0 | (c >> 18));
                *o++ = (uint8_t)(0x80 | ((c >> 12) & 0x3F));
                *o++ = (uint8_t)(0x80 | ((c >> 6) & 0x3F));
                *o++ = (uint8_t)(0x80 | (c & 0x3F));
            }
        }
        bytes = (const uint8_t *)w->utf8;
        len = o - (uint8_t *)w->utf8;
#endif
        Py_ssize_t c = piece_tokens(t, bytes, (size_t)len, w);
        if (c < 0)
            return -1;
        total += c;
        p = e;
    }
    return total;
}

#if !SCAN_ASCII
/* The pieces themselves, as str (for tests and diagnosis). */
static PyObject *
SCAN_NAME(pieces)(PyObject *text, const SCAN_CHAR *s, Py_ssize_t n)
{
    PyObject *list = PyList_New(0);
    if (list == NULL)
        return NULL;
    Py_ssize_t p = 0;
    while (p < n) {
        Py_ssize_t e = SCAN_NAME(next_piece)(s, n, p);
        PyObject *piece = PyUnicode_Substring(text, p, e);
        if (piece == NULL || PyList_Append(list, piece) < 0) {
            Py_XDECREF(piece);
            Py_DECREF(list);
            return NULL;
        }
        Py_DECREF(piece);
        p = e;
    }
    return list;
}
#endif

#undef SCAN_MASK
