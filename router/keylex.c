/*
 * keylex.c - the SQL lexer under the key extractor (see router/keylex.h).
 * Follows Postgres 15's scan.l for the token boundaries that matter to
 * routing; never allocates. Any thread.
 */
#include "router/keylex.h"

#include <pthread.h>
#include <string.h>

#include "shardmap/hash.h"

/* ---- keywords: an open-addressed hash table built once ---- */

struct kl_kwent {
	const char *str;
	uint8_t len;
	uint8_t flags;
};

#define KL_KW_ENT(id, s, fl) {s, sizeof(s) - 1, fl},
static const struct kl_kwent kl_kwtab[KW__COUNT] = {{"", 0, 0}, KL_KEYWORDS(KL_KW_ENT)};
#undef KL_KW_ENT

#define KL_HASH_SLOTS 1024
#define KL_KW_MAXLEN 20
static uint16_t kl_slots[KL_HASH_SLOTS];
static pthread_once_t kl_once = PTHREAD_ONCE_INIT;

static inline unsigned char kl_lower(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') ? (unsigned char)(c + 32) : c;
}

static inline uint32_t kl_hash_step(uint32_t h, unsigned char c)
{
	return (h ^ c) * 16777619u;
}

static void kl_build_table(void)
{
	for (unsigned i = 1; i < KW__COUNT; i++) {
		uint32_t h = 2166136261u;
		for (unsigned j = 0; j < kl_kwtab[i].len; j++)
			h = kl_hash_step(h, (unsigned char)kl_kwtab[i].str[j]);
		unsigned slot = h & (KL_HASH_SLOTS - 1);
		while (kl_slots[slot])
			slot = (slot + 1) & (KL_HASH_SLOTS - 1);
		kl_slots[slot] = (uint16_t)i;
	}
}

static enum kl_kw kl_lookup(const char *s, size_t n, uint32_t h)
{
	unsigned slot = h & (KL_HASH_SLOTS - 1);
	for (;;) {
		unsigned id = kl_slots[slot];
		if (!id)
			return KW_NONE;
		const struct kl_kwent *e = &kl_kwtab[id];
		if (e->len == n) {
			size_t j = 0;
			while (j < n && kl_lower((unsigned char)s[j]) == (unsigned char)e->str[j])
				j++;
			if (j == n)
				return (enum kl_kw)id;
		}
		slot = (slot + 1) & (KL_HASH_SLOTS - 1);
	}
}

enum kl_kw kl_keyword(const char *s, size_t n)
{
	pthread_once(&kl_once, kl_build_table);
	if (n > KL_KW_MAXLEN)
		return KW_NONE;
	uint32_t h = 2166136261u;
	for (size_t j = 0; j < n; j++)
		h = kl_hash_step(h, kl_lower((unsigned char)s[j]));
	return kl_lookup(s, n, h);
}

unsigned kl_keyword_flags(enum kl_kw kw)
{
	return (unsigned)kw < KW__COUNT ? kl_kwtab[kw].flags : 0;
}

/* ---- character classes ---- */

static inline bool kl_ident_start(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c >= 0x80;
}

static inline bool kl_ident_cont(unsigned char c)
{
	return kl_ident_start(c) || (c >= '0' && c <= '9') || c == '$';
}

static inline bool kl_digit(unsigned char c)
{
	return c >= '0' && c <= '9';
}

static inline bool kl_space(unsigned char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

static const bool kl_op_chars[256] = {
    ['~'] = true, ['!'] = true, ['@'] = true, ['#'] = true, ['^'] = true, ['&'] = true,
    ['|'] = true, ['`'] = true, ['?'] = true, ['+'] = true, ['-'] = true, ['*'] = true,
    ['/'] = true, ['%'] = true, ['<'] = true, ['>'] = true, ['='] = true,
};

static inline bool kl_op_char(unsigned char c)
{
	return kl_op_chars[c];
}

/* ---- hints in comments ---- */

static bool kl_word_at(const char *p, const char *end, const char *w, size_t wn)
{
	if ((size_t)(end - p) < wn)
		return false;
	for (size_t i = 0; i < wn; i++)
		if (kl_lower((unsigned char)p[i]) != (unsigned char)w[i])
			return false;
	return true;
}

/* After "name", skip optional blanks, '=', blanks; return value start or NULL. */
static const char *kl_hint_eq(const char *p, const char *end)
{
	while (p < end && (*p == ' ' || *p == '\t'))
		p++;
	if (p >= end || *p != '=')
		return NULL;
	p++;
	while (p < end && (*p == ' ' || *p == '\t'))
		p++;
	return p < end ? p : NULL;
}

static void kl_hint_key(struct kl_lexer *lx, const char *v, const char *end)
{
	const char *q = v;
	if (*v == '\'') {
		q = ++v;
		while (q < end && *q != '\'')
			q++;
		if (q >= end)
			return;
	} else {
		while (q < end && !kl_space((unsigned char)*q) && *q != '*' && *q != ',' &&
		       *q != ';' && *q != '/')
			q++;
		if (q == v)
			return;
	}
	lx->hint_key = v;
	lx->hint_key_len = (size_t)(q - v);
}

static void kl_hint_shard(struct kl_lexer *lx, const char *v, const char *end)
{
	int64_t n = 0;
	const char *q = v;
	while (q < end && kl_digit((unsigned char)*q) && n <= INT32_MAX)
		n = n * 10 + (*q++ - '0');
	if (q == v || n > INT32_MAX || (q < end && kl_ident_cont((unsigned char)*q)))
		return;
	lx->has_hint_shard = true;
	lx->hint_shard = (int32_t)n;
}

/* Look for shard_key=V and shard=N inside one comment body [p, end). */
static void kl_scan_hints(struct kl_lexer *lx, const char *p, const char *end)
{
	const char *q = p;
	while (q < end && (q = memchr(q, 's', (size_t)(end - q))) != NULL) {
		bool boundary = q == p || !kl_ident_cont((unsigned char)q[-1]);
		if (boundary && kl_word_at(q, end, "shard_key", 9)) {
			const char *v = kl_hint_eq(q + 9, end);
			if (v)
				kl_hint_key(lx, v, end);
		} else if (boundary && kl_word_at(q, end, "shard", 5)) {
			const char *v = kl_hint_eq(q + 5, end);
			if (v)
				kl_hint_shard(lx, v, end);
		}
		q++;
	}
}

static bool kl_maybe_hint(const char *p, const char *end)
{
	return memmem(p, (size_t)(end - p), "shard", 5) != NULL;
}

/* ---- skipping whitespace and comments ---- */

/* Returns false on an unterminated block comment. */
static bool kl_skip_block_comment(struct kl_lexer *lx)
{
	const char *s = lx->s;
	size_t i = lx->pos + 2, body = i;
	int depth = 1;
	while (i < lx->len) {
		if (s[i] == '/' && i + 1 < lx->len && s[i + 1] == '*') {
			depth++;
			i += 2;
		} else if (s[i] == '*' && i + 1 < lx->len && s[i + 1] == '/') {
			i += 2;
			if (--depth == 0) {
				if (kl_maybe_hint(s + body, s + i - 2))
					kl_scan_hints(lx, s + body, s + i - 2);
				lx->pos = i;
				return true;
			}
		} else {
			i++;
		}
	}
	lx->pos = lx->len;
	return false;
}

static bool kl_skip_space(struct kl_lexer *lx)
{
	const char *s = lx->s;
	while (lx->pos < lx->len) {
		unsigned char c = (unsigned char)s[lx->pos];
		if (kl_space(c)) {
			lx->pos++;
		} else if (c == '-' && lx->pos + 1 < lx->len && s[lx->pos + 1] == '-') {
			size_t b = lx->pos + 2, i = b;
			while (i < lx->len && s[i] != '\n' && s[i] != '\r')
				i++;
			if (kl_maybe_hint(s + b, s + i))
				kl_scan_hints(lx, s + b, s + i);
			lx->pos = i;
		} else if (c == '/' && lx->pos + 1 < lx->len && s[lx->pos + 1] == '*') {
			if (!kl_skip_block_comment(lx))
				return false;
		} else {
			break;
		}
	}
	return true;
}

/* ---- token scanners: each gets the start, sets t->len/type, moves pos ---- */

static void kl_error(struct kl_lexer *lx, struct kl_token *t)
{
	t->type = KL_ERROR;
	t->len = (uint32_t)(lx->len - t->start);
	lx->pos = lx->len;
}

/* After a closing quote of a '...' string: whitespace with a newline and
 * another quote continue the literal. Returns the position of that quote or 0. */
static size_t kl_string_continues(const struct kl_lexer *lx, size_t i)
{
	bool nl = false;
	while (i < lx->len && kl_space((unsigned char)lx->s[i])) {
		if (lx->s[i] == '\n' || lx->s[i] == '\r')
			nl = true;
		i++;
	}
	return (nl && i < lx->len && lx->s[i] == '\'') ? i : 0;
}

/* Scan a quoted body starting after the opening quote at q. backslash: E''. */
static void kl_quoted(struct kl_lexer *lx, struct kl_token *t, size_t i, char q, bool backslash)
{
	const char *s = lx->s;
	for (;;) {
		if (i >= lx->len) {
			kl_error(lx, t);
			return;
		}
		char c = s[i];
		if (backslash && c == '\\') {
			t->flags |= KLF_ESC;
			i += 2;
			continue;
		}
		if (c != q) {
			i++;
			continue;
		}
		if (i + 1 < lx->len && s[i + 1] == q) {
			t->flags |= KLF_ESC;
			i += 2;
			continue;
		}
		i++;
		size_t more = q == '\'' ? kl_string_continues(lx, i) : 0;
		if (more) {
			t->flags |= KLF_CONT;
			i = more + 1;
			continue;
		}
		break;
	}
	lx->pos = i;
	t->len = (uint32_t)(i - t->start);
}

static void kl_number(struct kl_lexer *lx, struct kl_token *t)
{
	const char *s = lx->s;
	size_t i = lx->pos;
	bool numeric = false;
	while (i < lx->len && kl_digit((unsigned char)s[i]))
		i++;
	/* "1..2" is an integer followed by "..": do not eat the dot. */
	if (i < lx->len && s[i] == '.' && !(i + 1 < lx->len && s[i + 1] == '.')) {
		numeric = true;
		i++;
		while (i < lx->len && kl_digit((unsigned char)s[i]))
			i++;
	}
	if (i < lx->len && (s[i] == 'e' || s[i] == 'E')) {
		size_t j = i + 1;
		if (j < lx->len && (s[j] == '+' || s[j] == '-'))
			j++;
		if (j < lx->len && kl_digit((unsigned char)s[j])) {
			numeric = true;
			i = j;
			while (i < lx->len && kl_digit((unsigned char)s[i]))
				i++;
		}
	}
	t->type = numeric ? KL_NUMERIC : KL_INTEGER;
	t->len = (uint32_t)(i - t->start);
	lx->pos = i;
}

static void kl_ident(struct kl_lexer *lx, struct kl_token *t)
{
	const char *s = lx->s;
	size_t i = lx->pos;
	uint32_t h = 2166136261u;
	while (i < lx->len && kl_ident_cont((unsigned char)s[i]))
		h = kl_hash_step(h, kl_lower((unsigned char)s[i++]));
	t->type = KL_IDENT;
	t->len = (uint32_t)(i - t->start);
	lx->pos = i;
	if (t->len <= KL_KW_MAXLEN) {
		t->kw = (uint8_t)kl_lookup(s + t->start, t->len, h);
		t->kwflags = kl_kwtab[t->kw].flags;
	}
}

/* $n, $tag$...$tag$, or $$...$$. */
static void kl_dollar(struct kl_lexer *lx, struct kl_token *t)
{
	const char *s = lx->s;
	size_t i = lx->pos + 1;
	if (i < lx->len && kl_digit((unsigned char)s[i])) {
		while (i < lx->len && kl_digit((unsigned char)s[i]))
			i++;
		t->type = KL_PARAM;
		t->len = (uint32_t)(i - t->start);
		lx->pos = i;
		return;
	}
	if (i < lx->len && kl_ident_start((unsigned char)s[i]))
		while (i < lx->len && kl_ident_cont((unsigned char)s[i]) && s[i] != '$')
			i++;
	if (i >= lx->len || s[i] != '$') {
		kl_error(lx, t); /* a stray '$' */
		return;
	}
	size_t taglen = i + 1 - lx->pos;
	const char *tag = s + lx->pos;
	for (i++; i + taglen <= lx->len; i++) {
		if (s[i] == '$' && memcmp(s + i, tag, taglen) == 0) {
			t->type = KL_DOLLAR;
			t->len = (uint32_t)(i + taglen - t->start);
			lx->pos = i + taglen;
			return;
		}
	}
	kl_error(lx, t);
}

/* Operators, with scan.l's rules: stop before "--" or slash-star inside;
 * a multi-char operator may not end in + or - unless it holds ~!@#%^&|`?. */
static void kl_operator(struct kl_lexer *lx, struct kl_token *t)
{
	const char *s = lx->s;
	size_t b = lx->pos, e = b;
	while (e < lx->len && kl_op_char((unsigned char)s[e]))
		e++;
	for (size_t j = b + 1; j + 1 < e; j++) {
		if ((s[j] == '-' && s[j + 1] == '-') || (s[j] == '/' && s[j + 1] == '*')) {
			e = j;
			break;
		}
	}
	size_t n = e - b;
	if (n > 1) {
		bool special = false;
		for (size_t j = b; j < e; j++)
			if (strchr("~!@#%^&|`?", s[j]))
				special = true;
		while (!special && n > 1 && (s[b + n - 1] == '+' || s[b + n - 1] == '-'))
			n--;
	}
	t->type = KL_OP;
	t->len = (uint32_t)n;
	lx->pos = b + n;
}

void kl_init(struct kl_lexer *lx, const char *s, size_t len, size_t pos)
{
	pthread_once(&kl_once, kl_build_table);
	memset(lx, 0, sizeof(*lx));
	lx->s = s;
	lx->len = len;
	lx->pos = pos < len ? pos : len;
}

static bool kl_prefixed_string(struct kl_lexer *lx, struct kl_token *t, unsigned char c)
{
	const char *s = lx->s;
	size_t i = lx->pos;
	if ((c == 'e' || c == 'E') && i + 1 < lx->len && s[i + 1] == '\'') {
		t->type = KL_ESTRING;
		kl_quoted(lx, t, i + 2, '\'', true);
		return true;
	}
	bool bxn = c == 'b' || c == 'B' || c == 'x' || c == 'X' || c == 'n' || c == 'N';
	if (bxn && i + 1 < lx->len && s[i + 1] == '\'') {
		t->type = KL_XSTRING;
		kl_quoted(lx, t, i + 2, '\'', false);
		return true;
	}
	if ((c == 'u' || c == 'U') && i + 2 < lx->len && s[i + 1] == '&' &&
	    (s[i + 2] == '\'' || s[i + 2] == '"')) {
		t->type = KL_XSTRING;
		kl_quoted(lx, t, i + 3, s[i + 2], false);
		return true;
	}
	return false;
}

static void kl_punct(struct kl_lexer *lx, struct kl_token *t, unsigned char c)
{
	static const uint8_t types[128] = {
	    ['('] = KL_LPAREN, [')'] = KL_RPAREN, ['['] = KL_LBRACKET, [']'] = KL_RBRACKET,
	    [','] = KL_COMMA,  ['.'] = KL_DOT,	  [';'] = KL_SEMI,     [':'] = KL_COLON,
	};
	if (c == ':' && lx->pos + 1 < lx->len && lx->s[lx->pos + 1] == ':') {
		t->type = KL_TYPECAST;
		t->len = 2;
	} else if (c == ':' && lx->pos + 1 < lx->len && lx->s[lx->pos + 1] == '=') {
		t->type = KL_OP;
		t->len = 2;
	} else if (c == '.' && lx->pos + 1 < lx->len && lx->s[lx->pos + 1] == '.') {
		t->type = KL_DOT; /* ".." (dot_dot) */
		t->len = 2;
	} else if (c < 128 && types[c]) {
		t->type = types[c];
		t->len = 1;
	} else {
		t->type = KL_ERROR;
		t->len = 1;
	}
	lx->pos += t->len;
}

void kl_next(struct kl_lexer *lx, struct kl_token *t)
{
	t->flags = 0;
	t->kw = KW_NONE;
	t->kwflags = 0;
	if (!kl_skip_space(lx)) {
		t->start = (uint32_t)lx->len;
		t->type = KL_ERROR;
		t->len = 0;
		return;
	}
	t->start = (uint32_t)lx->pos;
	t->len = 0;
	if (lx->pos >= lx->len) {
		t->type = KL_EOF;
		return;
	}
	const char *s = lx->s;
	unsigned char c = (unsigned char)s[lx->pos];
	if (kl_ident_start(c)) {
		if (!kl_prefixed_string(lx, t, c))
			kl_ident(lx, t);
	} else if (kl_digit(c) ||
		   (c == '.' && lx->pos + 1 < lx->len && kl_digit((unsigned char)s[lx->pos + 1]))) {
		kl_number(lx, t);
	} else if (c == '\'') {
		t->type = KL_STRING;
		kl_quoted(lx, t, lx->pos + 1, '\'', false);
	} else if (c == '"') {
		t->type = KL_QIDENT;
		kl_quoted(lx, t, lx->pos + 1, '"', false);
		if (t->type == KL_QIDENT && t->len == 2)
			t->type = KL_ERROR; /* zero-length delimited identifier */
	} else if (c == '$') {
		kl_dollar(lx, t);
	} else if (kl_op_char(c)) {
		kl_operator(lx, t);
	} else {
		kl_punct(lx, t, c);
	}
}

/* ---- values ---- */

size_t kl_ident_copy(const char *s, const struct kl_token *t, char *buf, size_t cap)
{
	const char *p = s + t->start;
	size_t n = 0;
	if (t->type == KL_IDENT) {
		if (t->len > cap)
			return (size_t)-1;
		for (size_t i = 0; i < t->len; i++)
			buf[n++] = (char)kl_lower((unsigned char)p[i]);
		return n;
	}
	if (t->type != KL_QIDENT)
		return (size_t)-1;
	for (size_t i = 1; i + 1 < t->len; i++) {
		if (n >= cap)
			return (size_t)-1;
		buf[n++] = p[i];
		if (p[i] == '"')
			i++; /* "" -> " */
	}
	return n;
}

bool kl_ident_eq(const char *s, const struct kl_token *t, const char *name, size_t name_len)
{
	const char *p = s + t->start;
	if (t->type == KL_IDENT) {
		if (t->len != name_len)
			return false;
		for (size_t i = 0; i < name_len; i++)
			if (kl_lower((unsigned char)p[i]) != (unsigned char)name[i])
				return false;
		return true;
	}
	if (t->type != KL_QIDENT)
		return false;
	if (!(t->flags & KLF_ESC))
		return t->len - 2 == name_len && memcmp(p + 1, name, name_len) == 0;
	char buf[128];
	size_t n = kl_ident_copy(s, t, buf, sizeof(buf));
	return n == name_len && memcmp(buf, name, n) == 0;
}

/* One backslash escape at p[0] == '\\' (p < end); appends the byte to *c,
 * returns the bytes consumed, or 0 to decline (\u, \U, \0 and friends). */
static size_t kl_escape(const char *p, const char *end, char *c)
{
	if (p + 1 >= end)
		return 0;
	char e = p[1];
	switch (e) {
	case 'b':
		*c = '\b';
		return 2;
	case 'f':
		*c = '\f';
		return 2;
	case 'n':
		*c = '\n';
		return 2;
	case 'r':
		*c = '\r';
		return 2;
	case 't':
		*c = '\t';
		return 2;
	case 'u':
	case 'U':
		return 0;
	case 'x': {
		int h1 = p + 2 < end ? sm_hex_digit(p[2]) : -1;
		if (h1 < 0) {
			*c = 'x';
			return 2;
		}
		int h2 = p + 3 < end ? sm_hex_digit(p[3]) : -1;
		*c = (char)(h2 < 0 ? h1 : h1 * 16 + h2);
		return h2 < 0 ? 3 : 4;
	}
	default:
		break;
	}
	if (e >= '0' && e <= '7') {
		int v = 0;
		size_t k = 1;
		while (k <= 3 && p + k < end && p[k] >= '0' && p[k] <= '7')
			v = v * 8 + (p[k++] - '0');
		if ((v & 0xff) == 0)
			return 0; /* a NUL byte: Postgres rejects it */
		*c = (char)(v & 0xff);
		return k;
	}
	*c = e;
	return 2;
}

int kl_string_value(const char *s, const struct kl_token *t, char *buf, size_t cap,
		    const char **out, size_t *out_len)
{
	const char *p = s + t->start;
	if (t->flags & KLF_CONT)
		return -1;
	if (t->type == KL_DOLLAR) {
		size_t tag = 1;
		while (p[tag] != '$')
			tag++;
		tag++;
		*out = p + tag;
		*out_len = t->len - 2 * tag;
		return 0;
	}
	if (t->type == KL_STRING && !(t->flags & KLF_ESC)) {
		*out = p + 1;
		*out_len = t->len - 2;
		return 0;
	}
	if (t->type != KL_STRING && t->type != KL_ESTRING)
		return -1;
	bool e = t->type == KL_ESTRING;
	const char *q = p + (e ? 2 : 1), *end = p + t->len - 1;
	size_t n = 0;
	while (q < end) {
		char c = *q;
		size_t used = 1;
		if (c == '\'')
			used = 2; /* '' -> ' */
		else if (e && c == '\\' && (used = kl_escape(q, end, &c)) == 0)
			return -1;
		if (n >= cap)
			return -1;
		buf[n++] = c;
		q += used;
	}
	*out = buf;
	*out_len = n;
	return 0;
}
