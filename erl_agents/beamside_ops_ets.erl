%%% ===========================================================================
%%% beamside_ops_ets -- ETS tables: the Tables service of the
%%% control plane.
%%% ===========================================================================
%%%
%%% Called by the sidecar through rex; the reply shape ({ok, _} | {error,
%%% {Kind, Message}}), the rules every operator tool follows and the text
%%% limits (depth, chars) are in beamside_ops's header.
%%%
%%% Functions (Opts is a map; all its keys optional):
%%%   tables(Opts)                 ETS tables: order_by (memory | size | name
%%%                                | id), limit (100, <= 10000)
%%%   read_table(Table, Cont, Opts)  a page of limit (100, <= 1000) objects
%%%                                with ets:select/3; Cont is undefined or the
%%%                                binary of the previous page (term_to_binary
%%%                                of the continuation, checked on the way
%%%                                back with binary_to_term(_, [safe]) and
%%%                                ets:repair_continuation/2)
%%% ===========================================================================
-module(beamside_ops_ets).

-export([tables/1, read_table/3]).

-import(beamside_ops, [int/5, text/2, pid_text/1, run/3, invalid/1, not_found/1,
                       precondition/1, bad_opts/0]).

-type reply(T) :: beamside_ops:reply(T).

%%% ---------------------------------------------------------------------------
%%% ETS

-spec tables(map()) -> reply(map()).
tables(Opts) when is_map(Opts) ->
    case maps:get(order_by, Opts, memory) of
        Order when Order =:= memory; Order =:= size; Order =:= name; Order =:= id ->
            Limit = int(limit, Opts, 100, 1, 10000),
            TimeoutMs = int(timeout_ms, Opts, 5000, 100, 60000),
            run(fun() -> tables_(Order, Limit, Opts) end, TimeoutMs, []);
        _ ->
            invalid(<<"order_by must be memory, size, name or id">>)
    end;
tables(_) ->
    bad_opts().

tables_(Order, Limit, Opts) ->
    Infos = lists:filtermap(fun table_info/1, ets:all()),
    Key = case Order of
              memory -> fun(#{memory := M, id := I}) -> {-M, I} end;
              size -> fun(#{size := S, id := I}) -> {-S, I} end;
              name -> fun(#{name := N, id := I}) -> {N, I} end;
              id -> fun(#{id := I}) -> I end
          end,
    Sorted = [T || {_, T} <- lists:sort([{Key(T), T} || T <- Infos])],
    Chosen = lists:sublist(Sorted, Limit),
    Words = erlang:system_info(wordsize),
    #{tables => [describe_table(T, Words, Opts) || T <- Chosen],
      total => length(Infos)}.

table_info(T) ->
    case ets:info(T) of
        undefined ->
            false;
        Info ->
            P = fun(K) -> proplists:get_value(K, Info) end,
            {true, #{id => P(id), name => P(name), type => P(type), size => P(size),
                     memory => P(memory), owner => P(owner), protection => P(protection),
                     named_table => P(named_table)}}
    end.

describe_table(#{id := Id, name := Name, owner := Owner} = T, Words, _Opts) ->
    OwnerName = case erlang:process_info(Owner, registered_name) of
                    {registered_name, N} when is_atom(N) -> atom_to_binary(N, utf8);
                    _ -> <<>>
                end,
    #{id => tid_text(Id),
      name => atom_to_binary(Name, utf8),
      type => atom_to_binary(maps:get(type, T), utf8),
      size => maps:get(size, T),
      memory_words => maps:get(memory, T),
      memory_bytes => maps:get(memory, T) * Words,
      owner_pid => pid_text(Owner),
      owner_name => OwnerName,
      protection => atom_to_binary(maps:get(protection, T), utf8),
      named_table => maps:get(named_table, T)}.

tid_text(Id) when is_reference(Id) -> list_to_binary(ref_to_list(Id));
tid_text(Id) -> iolist_to_binary(io_lib:format("~0tp", [Id])).

-spec read_table(binary(), binary() | undefined, map()) -> reply(map()).
read_table(Table, Cont, Opts) when is_binary(Table), is_map(Opts) ->
    case resolve_table(Table) of
        {ok, Tab} ->
            case {ets:info(Tab, protection), ets:info(Tab, owner)} of
                {undefined, _} ->
                    not_found(<<"no such table">>);
                {private, Owner} when Owner =/= self() ->
                    precondition(<<"the table is private: only its owner can read it">>);
                _ ->
                    Limit = int(limit, Opts, 100, 1, 1000),
                    RowOpts = Opts#{chars => int(chars, Opts, 1000, 16, 2000)},
                    read_page(Tab, Cont, Limit, RowOpts)
            end;
        {error, _} = E ->
            E
    end;
read_table(_, _, _) ->
    bad_opts().

-define(MATCH_ALL, [{'_', [], ['$_']}]).

read_page(Tab, Cont, Limit, Opts) ->
    Page = try
               case Cont of
                   undefined ->
                       {ok, ets:select(Tab, ?MATCH_ALL, Limit)};
                   Bin when is_binary(Bin) ->
                       C = ets:repair_continuation(binary_to_term(Bin, [safe]), ?MATCH_ALL),
                       case continuation_table(C) of
                           {ok, CT} ->
                               case same_table(CT, Tab) of
                                   true -> {ok, ets:select(C)};
                                   false -> {error, other_table}
                               end;
                           error ->
                               {error, bad}
                       end
               end
           catch _:_ -> {error, bad}
           end,
    case Page of
        {ok, '$end_of_table'} ->
            {ok, #{rows => [], continuation => undefined, size => size_of(Tab)}};
        {ok, {Objects, Next}} ->
            NextBin = case Next of
                          '$end_of_table' -> undefined;
                          _ -> term_to_binary(Next)
                      end,
            {ok, #{rows => [text(O, Opts) || O <- Objects],
                   continuation => NextBin, size => size_of(Tab)}};
        {error, other_table} ->
            invalid(<<"the continuation belongs to another table">>);
        {error, bad} ->
            invalid(<<"the continuation is not one this table gave">>)
    end.

continuation_table(C) when is_tuple(C), tuple_size(C) >= 2 -> {ok, element(1, C)};
continuation_table(_) -> error.

same_table(A, A) -> true;
same_table(A, B) -> ets:info(A, id) =:= ets:info(B, id) andalso ets:info(A, id) =/= undefined.

size_of(Tab) ->
    case ets:info(Tab, size) of
        undefined -> 0;
        S -> S
    end.

%% A table by name (named tables) or by its printed id (#Ref<...>).
resolve_table(<<"#Ref<", _/binary>> = Text) ->
    try list_to_ref(binary_to_list(Text)) of
        Ref -> {ok, Ref}
    catch error:badarg -> invalid(<<"not a table id: ", Text/binary>>)
    end;
resolve_table(Text) ->
    case string:to_integer(binary_to_list(Text)) of
        {N, []} when is_integer(N) ->
            {ok, N};
        _ ->
            try binary_to_existing_atom(Text, utf8) of
                Name ->
                    case ets:info(Name, named_table) of
                        true -> {ok, Name};
                        _ -> not_found(<<"no named table ", Text/binary,
                                         " (an unnamed table is read by its id)">>)
                    end
            catch error:badarg ->
                    not_found(<<"no named table ", Text/binary>>)
            end
    end.

