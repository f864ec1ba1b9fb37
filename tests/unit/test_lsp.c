/*
 * test_lsp.c - ws/lsp.c: pages translated and run by a real Lua 5.4, whose
 * output must be the page's text byte for byte (quotes, backslashes, long
 * bracket closers, CR/LF, NUL and every other byte), with code and
 * expressions where they stand; runtime and syntax errors must name the
 * page's own line; unterminated tags are refused with their line.
 */
#include <criterion/criterion.h>
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <stdlib.h>
#include <string.h>

#include "lsp.h"

TestSuite(lsp, .timeout = 60);

#define PROLOGUE "local _emit, _emitv = ...;"

struct page_out {
	char *p;
	size_t len, cap;
};

static struct page_out out;
static char errmsg[512];

static void append(const char *s, size_t n)
{
	if (out.len + n + 1 > out.cap) {
		out.cap = (out.len + n + 1) * 2;
		out.p = realloc(out.p, out.cap);
		cr_assert_not_null(out.p);
	}
	memcpy(out.p + out.len, s, n);
	out.len += n;
	out.p[out.len] = '\0';
}

static int l_emit(lua_State *L)
{
	size_t n;
	const char *s = luaL_checklstring(L, 1, &n);

	append(s, n);
	return 0;
}

static int l_emitv(lua_State *L)
{
	size_t n;
	const char *s = luaL_tolstring(L, 1, &n);

	append(s, n);
	return 0;
}

/*
 * Translate page[0..len) and run it as chunk "page". Returns 0 and the
 * output in out, or -1 with Lua's message in errmsg (load or run error).
 * The translation itself must succeed.
 */
static int run_page_n(const char *page, size_t len)
{
	char err[128];
	size_t chunk_len = 0;
	char *chunk = cs_lsp_translate(page, len, &chunk_len, err, sizeof(err));
	lua_State *L;
	int r;

	cr_assert_not_null(chunk, "translation failed: %s", err);
	cr_assert_eq(chunk[chunk_len], '\0');
	cr_assert(strncmp(chunk, PROLOGUE, strlen(PROLOGUE)) == 0, "chunk starts \"%.40s\"", chunk);
	out.len = 0;
	append("", 0);
	errmsg[0] = '\0';
	L = luaL_newstate();
	cr_assert_not_null(L);
	luaL_openlibs(L);
	r = luaL_loadbuffer(L, chunk, chunk_len, "=page");
	if (r == LUA_OK) {
		lua_pushcfunction(L, l_emit);
		lua_pushcfunction(L, l_emitv);
		r = lua_pcall(L, 2, 0, 0);
	}
	if (r != LUA_OK)
		snprintf(errmsg, sizeof(errmsg), "%s", lua_tostring(L, -1));
	lua_close(L);
	free(chunk);
	return r == LUA_OK ? 0 : -1;
}

static int run_page(const char *page)
{
	return run_page_n(page, strlen(page));
}

#define EXPECT_OUTPUT(page, want)                                                             \
	do {                                                                                  \
		cr_assert_eq(run_page(page), 0, "page failed: %s", errmsg);                   \
		cr_expect_str_eq(out.p, want);                                                \
	} while (0)

/* The page fails with a message starting "page:LINE:". */
static void expect_error_line(const char *page, int line)
{
	char want[32];

	cr_assert_eq(run_page(page), -1, "page ran without error");
	snprintf(want, sizeof(want), "page:%d:", line);
	cr_expect(strncmp(errmsg, want, strlen(want)) == 0, "error \"%s\", want line %d", errmsg, line);
}

/* ---- text --------------------------------------------------------------------- */

Test(lsp, plain_text_is_sent_as_it_is)
{
	EXPECT_OUTPUT("hello", "hello");
	EXPECT_OUTPUT("hello\nworld\n", "hello\nworld\n");
	EXPECT_OUTPUT("\n\n\n", "\n\n\n");
	EXPECT_OUTPUT("a \"quoted\" 'word' \\ back\\slash \\n not a newline",
		      "a \"quoted\" 'word' \\ back\\slash \\n not a newline");
	EXPECT_OUTPUT("]] ]=] ]==] [[ [=[ --[[ comment? ]]", "]] ]=] ]==] [[ [=[ --[[ comment? ]]");
	EXPECT_OUTPUT("crlf\r\nlines\r\nand a lone\r cr", "crlf\r\nlines\r\nand a lone\r cr");
	EXPECT_OUTPUT("\\\n\\\r\n\\", "\\\n\\\r\n\\");
	EXPECT_OUTPUT("<?xml version=\"1.0\"?>\n<? not a tag ?>", "<?xml version=\"1.0\"?>\n<? not a tag ?>");
	EXPECT_OUTPUT("<?LSP upper case is text ?>", "<?LSP upper case is text ?>");
	EXPECT_OUTPUT("ends with <?", "ends with <?");
	EXPECT_OUTPUT("?> alone", "?> alone");
}

Test(lsp, every_byte_value_survives)
{
	char page[256 * 2 + 16];
	size_t n = 0;

	for (int i = 0; i < 256; i++)
		page[n++] = (char)i;
	/* Digits right after a control byte: "\1" then "2" must not fuse. */
	for (int i = 0; i < 8; i++) {
		page[n++] = (char)i;
		page[n++] = '7';
	}
	cr_assert_eq(run_page_n(page, n), 0, "%s", errmsg);
	cr_assert_eq(out.len, n);
	cr_expect(memcmp(out.p, page, n) == 0);
}

Test(lsp, empty_page_and_code_only_pages)
{
	size_t len;
	char err[64];
	char *chunk = cs_lsp_translate("", 0, &len, err, sizeof(err));

	cr_assert_not_null(chunk);
	cr_expect_str_eq(chunk, PROLOGUE);
	cr_expect_eq(len, strlen(PROLOGUE));
	free(chunk);

	EXPECT_OUTPUT("", "");
	EXPECT_OUTPUT("<?lsp local x = 1 ?>", "");
	EXPECT_OUTPUT("<?lsp ?>", "");
	EXPECT_OUTPUT("<?lsp?>", "");
	/* The first line of the page is on the chunk's first line. */
	chunk = cs_lsp_translate("<?lsp x = 1 ?>", 14, &len, err, sizeof(err));
	cr_assert_not_null(chunk);
	cr_expect_str_eq(chunk, PROLOGUE " x = 1 ;");
	free(chunk);
}

/* ---- code and expressions --------------------------------------------------------- */

Test(lsp, code_runs_where_it_stands)
{
	EXPECT_OUTPUT("<?lsp for i = 1, 3 do ?>x<?lsp end ?>", "xxx");
	EXPECT_OUTPUT("a<?lsp if false then ?>b<?lsp else ?>c<?lsp end ?>d", "acd");
	EXPECT_OUTPUT("<?lsp local function f(s) ?>[<?= s ?>]<?lsp end f('a') f('b') ?>", "[a][b]");
	EXPECT_OUTPUT("<?lsp\nlocal t = {}\nfor i = 1, 3 do t[#t + 1] = i end\n?>n=<?= #t ?>", "n=3");
	/* Code that starts with '(' is not a call of what came before. */
	EXPECT_OUTPUT("x<?lsp ('s'):len() ?>y", "xy");
	EXPECT_OUTPUT("<?lsp local a = 1 ?><?lsp (function() end)() ?>z", "z");
	EXPECT_OUTPUT("<?= 1 ?><?lsp ('s'):len() ?>", "1");
	/* A line comment at a tag's end swallows nothing that follows. */
	EXPECT_OUTPUT("<?lsp -- a comment ?>after", "after");
	EXPECT_OUTPUT("<?lsp -- c ?>\nline two\n", "\nline two\n");
	EXPECT_OUTPUT("<?lsp local s = 'a--b' ?><?= s ?>", "a--b");
	EXPECT_OUTPUT("<?= 2 -- two ?>!", "2!");
	/* The emitters are locals: nothing leaks into the environment. */
	EXPECT_OUTPUT("<?= type(_ENV._emit) ?> <?= type(_emitv) ?>", "nil function");
}

Test(lsp, expressions)
{
	EXPECT_OUTPUT("<?= 1 + 2 ?>", "3");
	EXPECT_OUTPUT("<?lsp= 'a' .. 'b' ?>", "ab");
	EXPECT_OUTPUT("<?=nil?>|<?= true ?>|<?= 1.5 ?>", "nil|true|1.5");
	EXPECT_OUTPUT("<?= (function() return 1, 2 end)() ?>", "1");
	EXPECT_OUTPUT("<?= 'x'\n..\n'y' ?>", "xy");
	EXPECT_OUTPUT("<?= setmetatable({}, {__tostring = function() return 'T' end}) ?>", "T");
	EXPECT_OUTPUT("a<?= \"<b>\" ?>c", "a<b>c");
}

/* ---- line numbers ---------------------------------------------------------------------- */

Test(lsp, runtime_errors_name_the_page_line)
{
	expect_error_line("<?lsp error('boom') ?>", 1);
	expect_error_line("line 1\nline 2\n<?lsp\n\nerror('boom')\n?>", 5);
	expect_error_line("a\r\nb\r\nc\r\n<?lsp error('x') ?>", 4);
	expect_error_line("one\ntwo\n<?= nil + 1 ?>\n", 3);
	expect_error_line("<?= 'a'\n..\nnil ?>", 2);
	expect_error_line("\"q\"\\\n]]\n\x01\n<?lsp error('x') ?>", 4);
	expect_error_line("<?lsp for i = 1, 2 do ?>\nrow\n<?lsp end ?>\n<?lsp error('x') ?>", 4);
	expect_error_line("<?lsp -- note ?>\nx\n<?lsp error('x') ?>", 3);
	expect_error_line("<?lsp -- note ?>x\ny\n<?lsp error('x') ?>", 3);
	expect_error_line("<?= 1 ?><?= 2 ?>\n\n<?lsp local t = nil; t.x = 1 ?>", 3);
}

Test(lsp, syntax_errors_name_the_page_line)
{
	expect_error_line("<?lsp local ?>", 1);
	expect_error_line("text\n\n<?lsp if then ?>", 3);
	expect_error_line("a\nb\n<?= ?>", 3);
}

Test(lsp, chunk_keeps_the_page_line_count)
{
	static const char *const pages[] = {
		"a\nb\nc",
		"<?lsp\nx = 1\n?>\ntext\n<?= x\n?>\n",
		"\r\n\r\n<?lsp ?>\r\n",
		"]]\n]=]\n\\\n\"\n",
	};

	for (size_t i = 0; i < sizeof(pages) / sizeof(pages[0]); i++) {
		size_t len, lines_in = 0, lines_out = 0;
		char *chunk = cs_lsp_translate(pages[i], strlen(pages[i]), &len, NULL, 0);

		cr_assert_not_null(chunk);
		for (const char *p = pages[i]; *p; p++)
			lines_in += *p == '\n';
		for (size_t k = 0; k < len; k++)
			lines_out += chunk[k] == '\n';
		cr_expect_eq(lines_out, lines_in, "page %zu: %zu lines, chunk %zu", i, lines_in, lines_out);
		free(chunk);
	}
}

/* ---- refusals ------------------------------------------------------------------------- */

static void expect_unterminated(const char *page, const char *want)
{
	char err[64];
	size_t len = 12345;

	memset(err, 'x', sizeof(err));
	cr_expect_null(cs_lsp_translate(page, strlen(page), &len, err, sizeof(err)), "\"%s\"", page);
	cr_expect_str_eq(err, want);
	/* No room for a message is fine too. */
	cr_expect_null(cs_lsp_translate(page, strlen(page), &len, NULL, 0));
}

Test(lsp, unterminated_tags)
{
	expect_unterminated("<?lsp x = 1", "line 1: <?lsp without ?>");
	expect_unterminated("a\nb\n<?lsp x = 1\n\n", "line 3: <?lsp without ?>");
	expect_unterminated("a\n<?= x", "line 2: <?= without ?>");
	expect_unterminated("<?lsp ?>\n\n\n<?lsp= x ?", "line 4: <?lsp= without ?>");
	expect_unterminated("<?lsp", "line 1: <?lsp without ?>");
	/* A short error buffer gets a truncated, terminated message. */
	char err[8];
	cr_expect_null(cs_lsp_translate("<?lsp", 5, NULL, err, sizeof(err)));
	cr_expect_str_eq(err, "line 1:");
}

Test(lsp, question_mark_gt_inside_a_lua_string_ends_the_tag)
{
	/* As in the original product: the tag ends at the first "?>", so
	 * this page's code is `local s = "` and it cannot load. */
	cr_expect_eq(run_page("<?lsp local s = \"?>\" ?>"), -1);
	cr_expect(strstr(errmsg, "page:1:") == errmsg, "%s", errmsg);
	/* The way around it. */
	EXPECT_OUTPUT("<?lsp local s = '?' .. '>' ?><?= s ?>", "?>");
}

Test(lsp, large_page)
{
	size_t n = 1 << 20;
	char *page = malloc(n);

	cr_assert_not_null(page);
	for (size_t i = 0; i < n; i++)
		page[i] = (char)("ab\"\\\n\r]\x01"[i % 8]);
	cr_assert_eq(run_page_n(page, n), 0, "%s", errmsg);
	cr_assert_eq(out.len, n);
	cr_expect(memcmp(out.p, page, n) == 0);
	free(page);
}
