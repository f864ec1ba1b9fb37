/*
 * test_codec.c - luabind/codec.c: ba.rnd, ba.rnds, ba.rndbs, ba.rndseed,
 * ba.b64encode/b64decode/b64urlencode and ba.urlencode.
 */
#include "vm_helpers.h"

TestSuite(codec, .init = t_vm_setup, .fini = t_vm_teardown, .timeout = 30);

Test(codec, rnd_stays_in_its_ranges_and_covers_them)
{
	T_LUA("local seen = {}\n"
	      "for _ = 1, 2000 do\n"
	      "  local v = ba.rnd(6)\n"
	      "  assert(math.type(v) == 'integer' and v >= 1 and v <= 6, v)\n"
	      "  seen[v] = true\n"
	      "  local w = ba.rnd(-3, 3)\n"
	      "  assert(w >= -3 and w <= 3, w)\n"
	      "  local x = ba.rnd()\n"
	      "  assert(x >= 0 and x < 2^31, x)\n"
	      "end\n"
	      "for v = 1, 6 do assert(seen[v], 'never drew ' .. v) end\n"
	      "assert(ba.rnd(7, 7) == 7)\n"
	      "assert(not pcall(ba.rnd, 5, 1), 'an empty interval must raise')\n"
	      "local a = ba.rnd(math.mininteger, math.maxinteger)\n"
	      "assert(math.type(a) == 'integer')");
}

Test(codec, rnds_widths_follow_the_original_table)
{
	T_LUA("local bits = {4, 8, 12, 32, 20, 24, 28}\n"
	      "for n, w in ipairs(bits) do\n"
	      "  local max = 0\n"
	      "  for _ = 1, 300 do\n"
	      "    local v = ba.rnds(n)\n"
	      "    assert(v >= 0 and v < 2^w, n .. ': ' .. v)\n"
	      "    if v > max then max = v end\n"
	      "  end\n"
	      "  assert(max >= 2^(w - 1), n .. ': never used the top bit, max ' .. max)\n"
	      "end\n"
	      "assert(ba.rnds(0) == 0 and ba.rnds(9) == 0)\n"
	      "assert(math.type(ba.rnds(8)) == 'integer')");
}

Test(codec, rndbs_gives_n_bytes_that_differ)
{
	T_LUA("local a, b = ba.rndbs(32), ba.rndbs(32)\n"
	      "assert(#a == 32 and #b == 32 and a ~= b)\n"
	      "assert(ba.rndbs(0) == '')\n"
	      "assert(not pcall(ba.rndbs, -1))\n"
	      "ba.rndseed(42)\n"
	      "assert(ba.rndbs(16) ~= ba.rndbs(16), 'rndseed must not make draws repeat')");
}

Test(codec, b64_round_trips_and_matches_rfc4648_vectors)
{
	T_LUA("local v = {[''] = '', f = 'Zg==', fo = 'Zm8=', foo = 'Zm9v', foob = 'Zm9vYg==',\n"
	      "           fooba = 'Zm9vYmE=', foobar = 'Zm9vYmFy'}\n"
	      "for plain, enc in pairs(v) do\n"
	      "  assert(ba.b64encode(plain) == enc, plain)\n"
	      "  assert(ba.b64decode(enc) == plain, enc)\n"
	      "end\n"
	      "local all = {} for i = 0, 255 do all[#all+1] = string.char(i) end\n"
	      "all = table.concat(all)\n"
	      "assert(ba.b64decode(ba.b64encode(all)) == all)\n"
	      "assert(ba.b64decode(ba.b64urlencode(all)) == all)\n"
	      "assert(ba.b64urlencode('\\255\\254\\253\\252') == '__79_A')\n"
	      "assert(ba.b64decode('Zm9v\\nYmFy') == 'foobar', 'white space is skipped')\n"
	      "assert(ba.b64decode('Zm9vYg') == 'foob', 'padding is optional')\n"
	      "assert(ba.b64decode('Zm$v') == nil)\n"
	      "assert(ba.b64decode('Zg==Zg==') == nil, 'data after padding')\n"
	      "assert(ba.b64decode('Z') == nil, 'a lone sextet')");
}

Test(codec, urlencode_escapes_all_but_unreserved_and_joins_tables)
{
	T_LUA("assert(ba.urlencode('a b&c/\\195\\169~-._') == 'a%20b%26c%2F%C3%A9~-._')\n"
	      "assert(ba.urlencode({b = '2 3', a = 1, [5] = 'x'}) == '5=x&a=1&b=2%203')\n"
	      "assert(ba.urlencode({}) == '')\n"
	      "assert(not pcall(ba.urlencode, {[true] = 1}))");
}
