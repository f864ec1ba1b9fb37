/*
 * test_ba.c - luabind/ba.c through a real VM: the byte-order codecs
 * ba.socket.n2h/h2n/fn2h/fh2n, ba.clock and ba.version.
 */
#include "vm_helpers.h"

TestSuite(ba, .init = t_vm_setup, .fini = t_vm_teardown, .timeout = 30);

Test(ba, harness_reports_a_failing_assert)
{
	cr_expect_eq(t_lua_run("assert(false, 'meant to fail')"), -1);
	cr_expect_not_null(t_find_log("meant to fail"));
}

Test(ba, n2h_and_h2n_round_trip_sizes_1_to_8)
{
	T_LUA("local s = ba.socket\n"
	      "for size = 1, 8 do\n"
	      "  local bytes, v = {}, 0\n"
	      "  for i = 1, size do\n"
	      "    bytes[i] = string.char(i * 16 + i)\n" /* 0x11 0x22 ... 0x88 */
	      "    v = (v << 8) | (i * 16 + i)\n"
	      "  end\n"
	      "  local str = table.concat(bytes)\n"
	      "  assert(s.n2h(size, str) == v, 'n2h size ' .. size)\n"
	      "  assert(s.h2n(size, v) == str, 'h2n size ' .. size)\n"
	      "  assert(#s.h2n(size, 0) == size, 'h2n length ' .. size)\n"
	      "end\n");
}

Test(ba, n2h_is_big_endian_and_unsigned_below_8_bytes)
{
	T_LUA("local s = ba.socket\n"
	      "assert(s.n2h(2, '\\1\\2') == 0x0102)\n"
	      "assert(s.h2n(2, 0x0102) == '\\1\\2')\n"
	      "assert(s.n2h(1, '\\255') == 255)\n"
	      "assert(s.n2h(4, '\\255\\255\\255\\255') == 0xffffffff)\n"
	      "assert(s.n2h(7, string.rep('\\255', 7)) == (1 << 56) - 1)\n");
}

Test(ba, eight_bytes_carry_the_full_lua_integer)
{
	T_LUA("local s = ba.socket\n"
	      "assert(s.h2n(8, -1) == string.rep('\\255', 8))\n"
	      "assert(s.n2h(8, string.rep('\\255', 8)) == -1)\n"
	      "assert(s.n2h(8, s.h2n(8, math.mininteger)) == math.mininteger)\n"
	      "assert(s.n2h(8, s.h2n(8, math.maxinteger)) == math.maxinteger)\n");
}

Test(ba, h2n_keeps_the_low_bytes)
{
	T_LUA("local s = ba.socket\n"
	      "assert(s.h2n(2, 0x12345) == '\\x23\\x45')\n"
	      "assert(s.h2n(1, 256 + 7) == '\\7')\n"
	      "assert(s.h2n(3, -1) == '\\255\\255\\255')\n");
}

Test(ba, n2h_reads_at_an_offset)
{
	T_LUA("local s = ba.socket\n"
	      "for size = 1, 8 do\n"
	      "  local str = s.h2n(size, 0x0102030405060708 >> (8 * (8 - size)))\n"
	      "  local v = s.n2h(size, str)\n"
	      "  assert(s.n2h(size, 'xyz' .. str .. '!', 4) == v, 'offset, size ' .. size)\n"
	      "  assert(s.n2h(size, 'xyz' .. str, 4) == v, 'offset at the end, size ' .. size)\n"
	      "end\n"
	      "assert(s.n2h(1, 'abcd', 4) == string.byte('d'))\n"
	      "assert(s.n2h(2, 'abcd', 1) == 0x6162)\n");
}

Test(ba, bad_sizes_raise_invalid_size)
{
	T_LUA("local s = ba.socket\n"
	      "local function err(f, ...)\n"
	      "  local ok, e = pcall(f, ...)\n"
	      "  assert(not ok, 'no error')\n"
	      "  return tostring(e)\n"
	      "end\n"
	      "for _, size in ipairs({0, 9, -1}) do\n"
	      "  assert(err(s.n2h, size, 'abcdefghij'):find('Invalid size', 1, true), 'n2h ' .. size)\n"
	      "  assert(err(s.h2n, size, 1):find('Invalid size', 1, true), 'h2n ' .. size)\n"
	      "end\n"
	      "local long = string.rep('x', 17)\n"
	      "for _, size in ipairs({0, 2, 3, 5, 16}) do\n"
	      "  assert(err(s.fn2h, size, long):find('Invalid size', 1, true), 'fn2h ' .. size)\n"
	      "  assert(err(s.fh2n, size, 1.5):find('Invalid size', 1, true), 'fh2n ' .. size)\n"
	      "end\n");
}

Test(ba, reads_past_the_string_raise_invalid_offset)
{
	T_LUA("local s = ba.socket\n"
	      "local function err(f, ...)\n"
	      "  local ok, e = pcall(f, ...)\n"
	      "  assert(not ok, 'no error')\n"
	      "  return tostring(e)\n"
	      "end\n"
	      "assert(err(s.n2h, 4, 'abc'):find('Invalid offset', 1, true))\n"
	      "assert(err(s.n2h, 2, 'abcd', 4):find('Invalid offset', 1, true))\n"
	      "assert(err(s.n2h, 1, 'abcd', 5):find('Invalid offset', 1, true))\n"
	      "assert(err(s.n2h, 1, 'abcd', 0):find('Invalid offset', 1, true))\n"
	      "assert(err(s.n2h, 1, 'abcd', -1):find('Invalid offset', 1, true))\n"
	      "assert(err(s.n2h, 1, ''):find('Invalid offset', 1, true))\n"
	      "assert(err(s.n2h, 8, '12345678', math.maxinteger):find('Invalid offset', 1, true))\n"
	      "assert(err(s.fn2h, 8, '1234567'):find('Invalid offset', 1, true))\n"
	      "assert(err(s.fn2h, 4, '12345678', 6):find('Invalid offset', 1, true))\n"
	      "assert(err(s.fn2h, 4, '12345678', 0):find('Invalid offset', 1, true))\n"
	      "assert(err(s.fn2h, 8, '12345678', math.maxinteger):find('Invalid offset', 1, true))\n");
}

Test(ba, float_codecs_use_big_endian_ieee)
{
	T_LUA("local s = ba.socket\n"
	      "assert(s.fh2n(4, 1.5) == '\\63\\192\\0\\0')\n"
	      "assert(s.fh2n(8, 1.5) == '\\63\\248\\0\\0\\0\\0\\0\\0')\n"
	      "assert(s.fn2h(4, '\\63\\192\\0\\0') == 1.5)\n"
	      "assert(s.fn2h(8, '\\192\\0\\0\\0\\0\\0\\0\\0') == -2.0)\n"
	      "assert(s.fh2n(8, 1) == s.fh2n(8, 1.0), 'integers are accepted')\n");
}

Test(ba, float_codecs_round_trip_4_and_8)
{
	T_LUA("local s = ba.socket\n"
	      "for _, x in ipairs({0.0, -0.1, 1e300, -1e-300, math.pi, math.huge, -math.huge}) do\n"
	      "  assert(s.fn2h(8, s.fh2n(8, x)) == x, 'double ' .. x)\n"
	      "end\n"
	      "for _, x in ipairs({0.0, 2.25, -1024.5, 1 / 1024, math.huge}) do\n"
	      "  assert(s.fn2h(4, s.fh2n(4, x)) == x, 'float ' .. x)\n"
	      "end\n"
	      "local f = s.fn2h(4, s.fh2n(4, math.pi))\n"
	      "assert(f ~= math.pi and math.abs(f - math.pi) < 1e-6, 'float rounds: ' .. f)\n"
	      "local nan = s.fn2h(8, s.fh2n(8, 0 / 0))\n"
	      "assert(nan ~= nan, 'NaN survives')\n"
	      "assert(s.fn2h(4, 'ab' .. s.fh2n(4, 2.25) .. 'cd', 3) == 2.25)\n"
	      "assert(s.fn2h(8, 'a' .. s.fh2n(8, -0.1), 2) == -0.1)\n"
	      "assert(math.type(s.fn2h(4, s.fh2n(4, 3))) == 'float')\n");
}

Test(ba, clock_is_a_monotonic_integer_in_milliseconds)
{
	T_LUA("local a = ba.clock()\n"
	      "assert(math.type(a) == 'integer', 'integer milliseconds')\n"
	      "local prev, changed = a, false\n"
	      "local t0 = os.time()\n"
	      "for i = 1, 1e8 do\n"
	      "  local now = ba.clock()\n"
	      "  assert(now >= prev, 'went back from ' .. prev .. ' to ' .. now)\n"
	      "  prev = now\n"
	      "  if now >= a + 5 then changed = true break end\n"
	      "  if os.time() > t0 + 5 then break end\n"
	      "end\n"
	      "assert(changed, 'ba.clock() did not advance')\n");
}

Test(ba, clock_counts_milliseconds)
{
	T_LUA("local a, c = ba.clock(), os.clock()\n"
	      "while os.clock() - c < 0.02 do end\n" /* 20 ms of CPU time, so >= 20 ms */
	      "local d = ba.clock() - a\n"
	      "assert(d >= 19 and d < 5000, 'expected about 20 ms, got ' .. d)\n");
}

Test(ba, version_is_the_build_version)
{
	T_LUA("assert(type(ba.version) == 'string' and #ba.version > 0)\n"
	      "assert(ba.version == cosockd.version)\n"
	      "assert(ba.version == '" COSOCKD_VERSION "', ba.version)\n");
}
