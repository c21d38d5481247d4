%%% ===========================================================================
%%% beamside_ops_code -- loaded code: the Code service of the control
%%% plane.
%%% ===========================================================================
%%%
%%% Called by the sidecar through rex; the reply shape ({ok, _} | {error,
%%% {Kind, Message}}) and the rules every operator tool follows are in
%%% beamside_ops's header.
%%%
%%% Functions (Opts is a map; all its keys optional):
%%%   modules(Opts)                loaded modules with md5, old code flag and
%%%                                path: prefix (binary), only_old_code,
%%%                                limit (1000, <= 20000)
%%%   soft_purge(Module | all, Opts)  code:soft_purge/1 of a module, or of
%%%                                every module that has old code: what was
%%%                                purged, what is still in use
%%% ===========================================================================
-module(beamside_ops_code).

-export([modules/1, soft_purge/2]).

-import(beamside_ops, [int/5, bin/1, run/3, not_found/1, bad_opts/0]).

-type reply(T) :: beamside_ops:reply(T).

%%% ---------------------------------------------------------------------------
%%% code

-spec modules(map()) -> reply(map()).
modules(Opts) when is_map(Opts) ->
    Limit = int(limit, Opts, 1000, 1, 20000),
    Prefix = case maps:get(prefix, Opts, undefined) of
                 B when is_binary(B) -> B;
                 _ -> <<>>
             end,
    OnlyOld = maps:get(only_old_code, Opts, false) =:= true,
    Run = fun() ->
                  Loaded = lists:sort(code:all_loaded()),
                  Matching = [{M, F} || {M, F} <- Loaded, prefix(Prefix, M),
                                        not OnlyOld orelse erlang:check_old_code(M)],
                  Chosen = lists:sublist(Matching, Limit),
                  #{modules => [module_entry(M, F) || {M, F} <- Chosen],
                    total => length(Loaded),
                    matching => length(Matching)}
          end,
    run(Run, int(timeout_ms, Opts, 10000, 100, 60000), []);
modules(_) ->
    bad_opts().

prefix(<<>>, _) -> true;
prefix(P, M) ->
    B = atom_to_binary(M, utf8),
    binary:longest_common_prefix([P, B]) =:= byte_size(P).

module_entry(M, File) ->
    Md5 = try erlang:get_module_info(M, md5) of
              B when is_binary(B) -> hex(B);
              _ -> <<>>
          catch _:_ -> <<>>
          end,
    #{name => atom_to_binary(M, utf8),
      md5 => Md5,
      old_code => erlang:check_old_code(M),
      path => case File of
                  F when is_list(F) -> bin(F);
                  A when is_atom(A) -> atom_to_binary(A, utf8);
                  _ -> <<>>
              end}.

hex(Bin) -> << <<(hex_digit(N div 16)), (hex_digit(N rem 16))>> || <<N>> <= Bin >>.

hex_digit(N) when N < 10 -> $0 + N;
hex_digit(N) -> $a + N - 10.

-spec soft_purge(binary() | all, map()) -> reply(map()).
soft_purge(all, Opts) when is_map(Opts) ->
    Run = fun() ->
                  Old = [M || {M, _} <- lists:sort(code:all_loaded()),
                              erlang:check_old_code(M)],
                  purge_each(Old)
          end,
    run(Run, int(timeout_ms, Opts, 30000, 100, 600000), []);
soft_purge(Module, Opts) when is_binary(Module), is_map(Opts) ->
    try binary_to_existing_atom(Module, utf8) of
        M ->
            case code:is_loaded(M) of
                false -> not_found(<<"module ", Module/binary, " is not loaded">>);
                _ -> run(fun() -> purge_each([M || erlang:check_old_code(M)]) end,
                             int(timeout_ms, Opts, 30000, 100, 600000), [])
            end
    catch error:badarg ->
            not_found(<<"module ", Module/binary, " is not loaded">>)
    end;
soft_purge(_, _) ->
    bad_opts().

purge_each(Mods) ->
    {Purged, InUse} = lists:partition(fun code:soft_purge/1, Mods),
    #{purged => [atom_to_binary(M, utf8) || M <- Purged],
      in_use => [atom_to_binary(M, utf8) || M <- InUse]}.

