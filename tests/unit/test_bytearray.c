/*
 * test_bytearray.c - luabind/bytearray.c: ba.bytearray (BA-API.md §8).
 */
#include "vm_helpers.h"

TestSuite(bytearray, .init = t_vm_setup, .fini = t_vm_teardown, .timeout = 30);

Test(bytearray, create_from_size_or_string)
{
	T_LUA("local B = ba.bytearray\n"
	      "local b = B.create(4)\n"
	      "assert(#b == 4 and b[1] == 0 and b[4] == 0)\n"
	      "local n, i, j = B.size(b) assert(n == 4 and i == 1 and j == 4)\n"
	      "local c = B.create('hi!')\n"
	      "assert(#c == 3 and tostring(c) == 'hi!' and c[2] == 105)\n"
	      "assert(not pcall(B.create, 0) and not pcall(B.create, ''))");
}

Test(bytearray, assignment_takes_numbers_booleans_strings_tables_and_bytearrays)
{
	T_LUA("local B = ba.bytearray\n"
	      "local b = B.create(10)\n"
	      "b[1] = 65 b[2] = true b[3] = false b[4] = 'xyz' b[7] = {1, 2} b[9] = B.create('QR')\n"
	      "assert(B.tostring(b) == 'A\\1\\0xyz\\1\\2QR', B.tostring(b))\n"
	      "assert(b[-1] == 82, 'negative index')\n"
	      "local ok, e = pcall(function() b[11] = 1 end)\n"
	      "assert(not ok and e:find('ByteArray range error: index scope', 1, true), e)\n"
	      "assert(not pcall(function() return b[0] end))\n"
	      "assert(not pcall(function() b[9] = 'abc' end), 'a string past the end')");
}

Test(bytearray, the_view_window_moves_indexing_length_and_tostring)
{
	T_LUA("local B = ba.bytearray\n"
	      "local b = B.create('0123456789')\n"
	      "B.setsize(b, 3, 6)\n"
	      "assert(#b == 4 and tostring(b) == '2345' and b[1] == 50)\n"
	      "local n, i, j = B.size(b) assert(n == 10 and i == 3 and j == 6)\n"
	      "assert(B.tostring(b, 2) == '345' and B.tostring(b, -2) == '45' and B.tostring(b, 3, 2) == '')\n"
	      "assert(not pcall(B.setsize, b, 7, 3), 'an empty view')\n"
	      "assert(not pcall(B.setsize, b, 1, 11))\n"
	      "B.setsize(b, 1, -1) assert(#b == 10)");
}

Test(bytearray, copy_clamps_and_returns_the_overflow)
{
	T_LUA("local B = ba.bytearray\n"
	      "local b = B.create(5)\n"
	      "assert(B.copy(b, 1, 'abc') == 0 and tostring(b) == 'abc\\0\\0')\n"
	      "assert(B.copy(b, 4, 'WXYZ') == 2 and tostring(b) == 'abcWX')\n"
	      "assert(B.copy(b, 1, 'hello world', 7) == 0 and tostring(b) == 'world')\n"
	      "assert(B.copy(b, 2, B.create('123456'), 2, 3) == 0 and tostring(b) == 'w23ld')\n"
	      "assert(B.copy(b, 1, 'abc', 3, 1) == 0, 'an empty source range')");
}

Test(bytearray, n2h_and_h2n_are_big_endian)
{
	T_LUA("local B = ba.bytearray\n"
	      "local b = B.create(8)\n"
	      "B.h2n(b, 1, 4, 0x01020304)\n"
	      "assert(B.tostring(b, 1, 4) == '\\1\\2\\3\\4')\n"
	      "assert(B.n2h(b, 1, 4) == 0x01020304 and b:n2h(2, 2) == 0x0203)\n"
	      "B.h2n(b, 1, 8, -1) assert(B.n2h(b, 1, 8) == -1)\n"
	      "assert(not pcall(B.n2h, b, 6, 4), 'past the end')\n"
	      "assert(not pcall(B.h2n, b, 1, 9, 0), 'size 9')");
}
