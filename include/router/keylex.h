/*
 * keylex.h - a Postgres 15-compatible SQL lexer for the key extractor
 * (router/keyextract.c). It never allocates and never copies: tokens are
 * (type, flags, keyword id, offset, length) into the caller's text.
 *
 * Handles: unquoted identifiers (keyword ids looked up case-insensitively),
 * "quoted" identifiers ("" escapes), '...' strings ('' escapes, and the
 * whitespace-with-newline continuation), E'...' (backslash escapes),
 * U&'...' / B'...' / X'...' / N'...' (recognised, not decoded), $$...$$ and
 * $tag$...$tag$, -- and nested block comments (skipped, but scanned for the
 * routing hints shard_key=VALUE and shard=N), numbers, $n, operators (with
 * Postgres' rule for a trailing + or -), :: and punctuation. Assumes
 * standard_conforming_strings = on (the default since 9.1).
 *
 * Pure and re-entrant: any thread (the keyword table is built once, under
 * pthread_once).
 */
#ifndef SR_ROUTER_KEYLEX_H
#define SR_ROUTER_KEYLEX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum kl_type {
	KL_EOF = 0,  /* end of input */
	KL_IDENT,    /* unquoted identifier or keyword (kw != KW_NONE) */
	KL_QIDENT,   /* "quoted" identifier; KLF_ESC if it holds "" */
	KL_STRING,   /* '...'; KLF_ESC if it holds '', KLF_CONT if continued */
	KL_ESTRING,  /* E'...' */
	KL_XSTRING,  /* U&'...', B'...', X'...', N'...', U&"..." (not decoded) */
	KL_DOLLAR,   /* $tag$...$tag$ */
	KL_INTEGER,  /* digits only */
	KL_NUMERIC,  /* decimal point and/or exponent */
	KL_PARAM,    /* $n */
	KL_OP,	     /* operator: = < > <= >= <> != + - * / % ^ || ... */
	KL_TYPECAST, /* :: */
	KL_LPAREN,
	KL_RPAREN,
	KL_LBRACKET,
	KL_RBRACKET,
	KL_COMMA,
	KL_DOT,
	KL_COLON,
	KL_SEMI,
	KL_ERROR, /* unterminated quote or comment, or a stray byte */
};

#define KLF_ESC 0x01  /* the text holds escapes that need decoding */
#define KLF_CONT 0x02 /* a '...' string continued over a newline */
#define KLF_NAME 0x04 /* (recognizer) consumed as a relation/alias/CTE name */

/* Keyword flags. */
#define KWF_NOFUNC 0x01	 /* "kw(" is syntax, not a function call */
#define KWF_NOALIAS 0x02 /* reserved: cannot be a bare alias / column name */
#define KWF_CLAUSE 0x04	 /* starts a clause that ends WHERE/FROM at depth 0 */

#define KL_KEYWORDS(X)                                                                             \
	X(ABORT, "abort", 0)                                                                       \
	X(ALL, "all", KWF_NOFUNC | KWF_NOALIAS)                                                    \
	X(ALTER, "alter", 0)                                                                       \
	X(ANALYSE, "analyse", KWF_NOALIAS)                                                         \
	X(ANALYZE, "analyze", KWF_NOALIAS)                                                         \
	X(AND, "and", KWF_NOFUNC | KWF_NOALIAS)                                                    \
	X(ANY, "any", KWF_NOFUNC | KWF_NOALIAS)                                                    \
	X(ARRAY, "array", KWF_NOFUNC | KWF_NOALIAS)                                                \
	X(AS, "as", KWF_NOFUNC | KWF_NOALIAS)                                                      \
	X(ATOMIC, "atomic", 0)                                                                     \
	X(AUTHORIZATION, "authorization", KWF_NOALIAS)                                             \
	X(BEGIN, "begin", 0)                                                                       \
	X(BETWEEN, "between", KWF_NOFUNC | KWF_NOALIAS)                                            \
	X(BIT, "bit", KWF_NOFUNC)                                                                  \
	X(BY, "by", KWF_NOFUNC)                                                                    \
	X(CALL, "call", 0)                                                                         \
	X(CASE, "case", KWF_NOFUNC | KWF_NOALIAS)                                                  \
	X(CAST, "cast", KWF_NOFUNC | KWF_NOALIAS)                                                  \
	X(CHAR, "char", KWF_NOFUNC)                                                                \
	X(CHARACTER, "character", KWF_NOFUNC)                                                      \
	X(CHARACTERISTICS, "characteristics", 0)                                                   \
	X(CHECKPOINT, "checkpoint", 0)                                                             \
	X(CLOSE, "close", 0)                                                                       \
	X(CLUSTER, "cluster", 0)                                                                   \
	X(COALESCE, "coalesce", KWF_NOFUNC)                                                        \
	X(COLLATE, "collate", KWF_NOALIAS)                                                         \
	X(COLLATION, "collation", KWF_NOFUNC)                                                      \
	X(COMMENT, "comment", 0)                                                                   \
	X(COMMIT, "commit", 0)                                                                     \
	X(CONCURRENTLY, "concurrently", KWF_NOALIAS)                                               \
	X(CONFLICT, "conflict", KWF_NOFUNC)                                                        \
	X(COPY, "copy", 0)                                                                         \
	X(CREATE, "create", KWF_NOALIAS)                                                           \
	X(CROSS, "cross", KWF_NOALIAS)                                                             \
	X(CURRENT, "current", 0)                                                                   \
	X(CURRENT_DATE, "current_date", KWF_NOFUNC | KWF_NOALIAS)                                  \
	X(CURRENT_TIME, "current_time", KWF_NOFUNC | KWF_NOALIAS)                                  \
	X(CURRENT_TIMESTAMP, "current_timestamp", KWF_NOFUNC | KWF_NOALIAS)                        \
	X(CURSOR, "cursor", 0)                                                                     \
	X(DEALLOCATE, "deallocate", 0)                                                             \
	X(DEC, "dec", KWF_NOFUNC)                                                                  \
	X(DECIMAL, "decimal", KWF_NOFUNC)                                                          \
	X(DECLARE, "declare", 0)                                                                   \
	X(DEFAULT, "default", KWF_NOFUNC | KWF_NOALIAS)                                            \
	X(DELETE, "delete", 0)                                                                     \
	X(DISCARD, "discard", 0)                                                                   \
	X(DISTINCT, "distinct", KWF_NOFUNC | KWF_NOALIAS)                                          \
	X(DO, "do", KWF_NOALIAS)                                                                   \
	X(DROP, "drop", 0)                                                                         \
	X(ELSE, "else", KWF_NOFUNC | KWF_NOALIAS)                                                  \
	X(END, "end", KWF_NOFUNC | KWF_NOALIAS)                                                    \
	X(EXCEPT, "except", KWF_NOFUNC | KWF_NOALIAS | KWF_CLAUSE)                                 \
	X(EXECUTE, "execute", 0)                                                                   \
	X(EXISTS, "exists", KWF_NOFUNC)                                                            \
	X(EXPLAIN, "explain", 0)                                                                   \
	X(EXTRACT, "extract", KWF_NOFUNC)                                                          \
	X(FALSE, "false", KWF_NOALIAS)                                                             \
	X(FETCH, "fetch", KWF_NOALIAS | KWF_CLAUSE)                                                \
	X(FILTER, "filter", KWF_NOFUNC)                                                            \
	X(FLOAT, "float", KWF_NOFUNC)                                                              \
	X(FOR, "for", KWF_NOFUNC | KWF_NOALIAS | KWF_CLAUSE)                                       \
	X(FREEZE, "freeze", KWF_NOALIAS)                                                           \
	X(FROM, "from", KWF_NOFUNC | KWF_NOALIAS)                                                  \
	X(FULL, "full", KWF_NOALIAS)                                                               \
	X(FUNCTION, "function", 0)                                                                 \
	X(GLOBAL, "global", 0)                                                                     \
	X(GRANT, "grant", KWF_NOALIAS)                                                             \
	X(GREATEST, "greatest", KWF_NOFUNC)                                                        \
	X(GROUP, "group", KWF_NOFUNC | KWF_NOALIAS | KWF_CLAUSE)                                   \
	X(GROUPING, "grouping", KWF_NOFUNC)                                                        \
	X(HAVING, "having", KWF_NOALIAS | KWF_CLAUSE)                                              \
	X(HOLD, "hold", 0)                                                                         \
	X(IF, "if", 0)                                                                             \
	X(ILIKE, "ilike", KWF_NOALIAS)                                                             \
	X(IN, "in", KWF_NOFUNC | KWF_NOALIAS)                                                      \
	X(INDEX, "index", 0)                                                                       \
	X(INNER, "inner", KWF_NOALIAS)                                                             \
	X(INSERT, "insert", 0)                                                                     \
	X(INTERSECT, "intersect", KWF_NOFUNC | KWF_NOALIAS | KWF_CLAUSE)                           \
	X(INTERVAL, "interval", KWF_NOFUNC)                                                        \
	X(INTO, "into", KWF_NOFUNC | KWF_NOALIAS)                                                  \
	X(IS, "is", KWF_NOALIAS)                                                                   \
	X(ISNULL, "isnull", KWF_NOALIAS)                                                           \
	X(JOIN, "join", KWF_NOFUNC | KWF_NOALIAS)                                                  \
	X(KEY, "key", 0)                                                                           \
	X(LATERAL, "lateral", KWF_NOFUNC | KWF_NOALIAS)                                            \
	X(LEAST, "least", KWF_NOFUNC)                                                              \
	X(LEFT, "left", KWF_NOALIAS)                                                               \
	X(LIKE, "like", KWF_NOALIAS)                                                               \
	X(LIMIT, "limit", KWF_NOALIAS | KWF_CLAUSE)                                                \
	X(LISTEN, "listen", 0)                                                                     \
	X(LOCAL, "local", 0)                                                                       \
	X(LOCALTIME, "localtime", KWF_NOFUNC | KWF_NOALIAS)                                        \
	X(LOCALTIMESTAMP, "localtimestamp", KWF_NOFUNC | KWF_NOALIAS)                              \
	X(LOCK, "lock", 0)                                                                         \
	X(MATERIALIZED, "materialized", 0)                                                         \
	X(MERGE, "merge", 0)                                                                       \
	X(MOVE, "move", 0)                                                                         \
	X(NAMES, "names", 0)                                                                       \
	X(NATIONAL, "national", KWF_NOFUNC)                                                        \
	X(NATURAL, "natural", KWF_NOALIAS)                                                         \
	X(NCHAR, "nchar", KWF_NOFUNC)                                                              \
	X(NO, "no", 0)                                                                             \
	X(NORMALIZE, "normalize", KWF_NOFUNC)                                                      \
	X(NOT, "not", KWF_NOFUNC | KWF_NOALIAS)                                                    \
	X(NOTIFY, "notify", 0)                                                                     \
	X(NOTNULL, "notnull", KWF_NOALIAS)                                                         \
	X(NULL, "null", KWF_NOFUNC | KWF_NOALIAS)                                                  \
	X(NULLIF, "nullif", KWF_NOFUNC)                                                            \
	X(NUMERIC, "numeric", KWF_NOFUNC)                                                          \
	X(OF, "of", 0)                                                                             \
	X(OFFSET, "offset", KWF_NOALIAS | KWF_CLAUSE)                                              \
	X(ON, "on", KWF_NOFUNC | KWF_NOALIAS)                                                      \
	X(ONLY, "only", KWF_NOFUNC | KWF_NOALIAS)                                                  \
	X(OR, "or", KWF_NOFUNC | KWF_NOALIAS)                                                      \
	X(ORDER, "order", KWF_NOFUNC | KWF_NOALIAS | KWF_CLAUSE)                                   \
	X(OUTER, "outer", KWF_NOALIAS)                                                             \
	X(OVER, "over", KWF_NOFUNC)                                                                \
	X(OVERLAPS, "overlaps", KWF_NOALIAS)                                                       \
	X(OVERLAY, "overlay", KWF_NOFUNC)                                                          \
	X(OVERRIDING, "overriding", 0)                                                             \
	X(POSITION, "position", KWF_NOFUNC)                                                        \
	X(PREPARE, "prepare", 0)                                                                   \
	X(PREPARED, "prepared", 0)                                                                 \
	X(PROCEDURE, "procedure", 0)                                                               \
	X(READ, "read", 0)                                                                         \
	X(REAL, "real", KWF_NOFUNC)                                                                \
	X(RECURSIVE, "recursive", 0)                                                               \
	X(REFRESH, "refresh", 0)                                                                   \
	X(REINDEX, "reindex", 0)                                                                   \
	X(RELEASE, "release", 0)                                                                   \
	X(RESET, "reset", 0)                                                                       \
	X(RETURNING, "returning", KWF_NOALIAS | KWF_CLAUSE)                                        \
	X(REVOKE, "revoke", 0)                                                                     \
	X(RIGHT, "right", KWF_NOALIAS)                                                             \
	X(ROLE, "role", 0)                                                                         \
	X(ROLLBACK, "rollback", 0)                                                                 \
	X(ROW, "row", KWF_NOFUNC)                                                                  \
	X(SAVEPOINT, "savepoint", 0)                                                               \
	X(SCHEMA, "schema", 0)                                                                     \
	X(SELECT, "select", KWF_NOFUNC | KWF_NOALIAS)                                              \
	X(SEQUENCE, "sequence", 0)                                                                 \
	X(SESSION, "session", 0)                                                                   \
	X(SET, "set", KWF_NOFUNC)                                                                  \
	X(SETOF, "setof", KWF_NOFUNC)                                                              \
	X(SHARE, "share", 0)                                                                       \
	X(SHOW, "show", 0)                                                                         \
	X(SIMILAR, "similar", KWF_NOALIAS)                                                         \
	X(SOME, "some", KWF_NOFUNC | KWF_NOALIAS)                                                  \
	X(START, "start", 0)                                                                       \
	X(SUBSTRING, "substring", KWF_NOFUNC)                                                      \
	X(SYMMETRIC, "symmetric", KWF_NOALIAS)                                                     \
	X(TABLE, "table", KWF_NOALIAS)                                                             \
	X(TABLESAMPLE, "tablesample", KWF_NOALIAS)                                                 \
	X(TEMP, "temp", 0)                                                                         \
	X(TEMPORARY, "temporary", 0)                                                               \
	X(THEN, "then", KWF_NOFUNC | KWF_NOALIAS)                                                  \
	X(TIME, "time", KWF_NOFUNC)                                                                \
	X(TIMESTAMP, "timestamp", KWF_NOFUNC)                                                      \
	X(TO, "to", KWF_NOALIAS)                                                                   \
	X(TRANSACTION, "transaction", 0)                                                           \
	X(TREAT, "treat", KWF_NOFUNC)                                                              \
	X(TRIM, "trim", KWF_NOFUNC)                                                                \
	X(TRUE, "true", KWF_NOALIAS)                                                               \
	X(TRUNCATE, "truncate", 0)                                                                 \
	X(UNION, "union", KWF_NOFUNC | KWF_NOALIAS | KWF_CLAUSE)                                   \
	X(UNLISTEN, "unlisten", 0)                                                                 \
	X(UNLOGGED, "unlogged", 0)                                                                 \
	X(UPDATE, "update", 0)                                                                     \
	X(USING, "using", KWF_NOFUNC | KWF_NOALIAS)                                                \
	X(VACUUM, "vacuum", 0)                                                                     \
	X(VALUES, "values", KWF_NOFUNC)                                                            \
	X(VARCHAR, "varchar", KWF_NOFUNC)                                                          \
	X(VERBOSE, "verbose", KWF_NOALIAS)                                                         \
	X(VIEW, "view", 0)                                                                         \
	X(WHEN, "when", KWF_NOFUNC | KWF_NOALIAS)                                                  \
	X(WHERE, "where", KWF_NOFUNC | KWF_NOALIAS)                                                \
	X(WINDOW, "window", KWF_NOALIAS | KWF_CLAUSE)                                              \
	X(WITH, "with", KWF_NOFUNC | KWF_NOALIAS)                                                  \
	X(WITHIN, "within", KWF_NOFUNC)                                                            \
	X(WITHOUT, "without", 0)                                                                   \
	X(WORK, "work", 0)                                                                         \
	X(WRITE, "write", 0)                                                                       \
	X(XMLCONCAT, "xmlconcat", KWF_NOFUNC)                                                      \
	X(XMLELEMENT, "xmlelement", KWF_NOFUNC)                                                    \
	X(XMLEXISTS, "xmlexists", KWF_NOFUNC)                                                      \
	X(XMLFOREST, "xmlforest", KWF_NOFUNC)                                                      \
	X(XMLPARSE, "xmlparse", KWF_NOFUNC)                                                        \
	X(XMLPI, "xmlpi", KWF_NOFUNC)                                                              \
	X(XMLROOT, "xmlroot", KWF_NOFUNC)                                                          \
	X(XMLSERIALIZE, "xmlserialize", KWF_NOFUNC)                                                \
	X(ZONE, "zone", 0)

#define KL_KW_ENUM(id, str, fl) KW_##id,
enum kl_kw { KW_NONE = 0, KL_KEYWORDS(KL_KW_ENUM) KW__COUNT };
_Static_assert(KW__COUNT <= 256, "keyword ids must fit struct kl_token.kw");
#undef KL_KW_ENUM

struct kl_token {
	uint8_t type;	 /* enum kl_type */
	uint8_t flags;	 /* KLF_* */
	uint8_t kw;	 /* enum kl_kw for KL_IDENT, else KW_NONE */
	uint8_t kwflags; /* KWF_* of kw */
	uint32_t start;	 /* byte offset into the lexer's text */
	uint32_t len;
};

struct kl_lexer {
	const char *s;
	size_t len;
	size_t pos;
	/* Hints seen in comments so far (pointers into s). */
	const char *hint_key;
	size_t hint_key_len;
	bool has_hint_shard;
	int32_t hint_shard;
};

void kl_init(struct kl_lexer *lx, const char *s, size_t len, size_t pos);

/* Scan the next token (comments and whitespace are skipped; hints recorded).
 * KL_EOF at the end; KL_ERROR for an unterminated quote/comment (the lexer
 * is then at the end of the text). */
void kl_next(struct kl_lexer *lx, struct kl_token *t);

/* Keyword id of an unquoted word (any case), KW_NONE if not a keyword. */
enum kl_kw kl_keyword(const char *s, size_t n);
unsigned kl_keyword_flags(enum kl_kw kw);

/* The identifier's name as Postgres sees it: unquoted folded to lower case
 * (ASCII), quoted with "" undone. Returns the length, or (size_t)-1 if it
 * does not fit in cap bytes (no NUL is written). */
size_t kl_ident_copy(const char *s, const struct kl_token *t, char *buf, size_t cap);

/* Does the identifier token name exactly `name` (a stored, case-folded name)? */
bool kl_ident_eq(const char *s, const struct kl_token *t, const char *name, size_t name_len);

/* The value of a string token: KL_STRING, KL_ESTRING, KL_DOLLAR. Points
 * *out into s when no decoding is needed, else decodes into buf. Returns 0,
 * or -1 to decline (KL_XSTRING, continued strings, \u escapes, too long). */
int kl_string_value(const char *s, const struct kl_token *t, char *buf, size_t cap,
		    const char **out, size_t *out_len);

#endif
