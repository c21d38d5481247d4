%%% ===========================================================================
%%% beamside_ops_alloc -- the memory allocators, carriers against blocks: the
%%% Memory/Allocators tool of the control plane.
%%% ===========================================================================
%%%
%%% Called by the sidecar through rex; the reply shape and the rules every
%%% tool follows are in beamside_ops's header.
%%%
%%%   allocators(Opts)  every alloc_util allocator (or those named), summed
%%%                     over its instances or one entry per instance:
%%%       #{allocators => [Entry], mseg_cache => [Cache], totals => Sizes,
%%%         memory_total, memory_code (erlang:memory/1), instances_seen,
%%%         truncated}
%%%       Entry: #{alloc, instance (-1 when summed), instances, mbcs, sbcs,
%%%                mbcs_pool, blocks_size, carriers_size, usage}
%%%         mbcs | sbcs | mbcs_pool: #{blocks, blocks_size, carriers,
%%%                carriers_size} (current values; blocks of every type the
%%%                carriers hold, so a carrier migrated from another
%%%                allocator counts where it is)
%%%         usage: blocks_size / carriers_size over the three kinds, 1.0
%%%                for an allocator with no carriers; a low usage with
%%%                large carriers is fragmentation
%%%       Cache (one per mseg_alloc instance): #{instance, hits, calls,
%%%                hit_rate}: calls counts mseg_alloc calls (its two
%%%                counters, giga and units, added up), hits those served
%%%                from the segment cache; hit_rate = hits / calls (1.0
%%%                with no call)
%%%       totals: blocks_size and carriers_size over the entries listed.
%%%   Options: allocators ([binary], every alloc_util allocator when absent
%%%   or empty; a name that is not one is an invalid error), per_instance
%%%   (false), sort (usage: lowest usage first | carriers_size: largest
%%%   first | name), limit (200, <= 5000 entries), timeout_ms (5000,
%%%   <= 60000) for the whole look, in a helper killed when it overruns.
%%%
%%% Cost: erlang:system_info({allocator, A}) is read once per allocator; it
%%% locks each instance in turn and its reply grows with the instances (one
%%% per scheduler, plus one): about 0.3-0.5 ms for the ten allocators of a
%%% node with 2 schedulers, 11-22 ms with 64 (OTP 28 and 25, measured on a
%%% 2-core VM).  That is why the periodic collect (beamside_vm) reads only
%%% {allocator_sizes, A}; this tool is for an operator who asks.
%%%
%%% Against erlang:memory(total): erlang:memory counts blocks, not
%%% carriers, and on the JIT (x86_64, aarch64) it counts the machine code
%%% (in erlang:memory(code)), which lives outside alloc_util; the rest of
%%% `code' is literal_alloc's blocks.  So memory_total = the sum of
%%% blocks_size over all allocators (totals, with no filter) + memory_code
%%% - literal_alloc's blocks_size, give or take a little the VM allocates
%%% elsewhere: measured with 2 schedulers on OTP 25 and 28, 0.4-0.65 MB on
%%% plain nodes (idle or with 100-500 modules loaded), 0.4-0.5 MB on
%%% ejabberd, Yaws and an Elixir app, 1.6 MB on RabbitMQ (74 MB in all);
%%% without the code term the gap was 3.6-30 MB, growing with the code
%%% loaded.  The sidecar's tests bound it at 4 MB.  The sum of
%%% carriers_size is the memory the allocators hold from the OS, above the
%%% blocks by the fragmentation.
%%% ===========================================================================
-module(beamside_ops_alloc).

-export([allocators/1]).

-import(beamside_ops, [int/5, existing_atom/1, run/3, invalid/1, bad_opts/0]).

-define(KINDS, [mbcs, sbcs, mbcs_pool]).

-type reply(T) :: beamside_ops:reply(T).
-type kind_sizes() :: #{blocks := non_neg_integer(), blocks_size := non_neg_integer(),
                        carriers := non_neg_integer(), carriers_size := non_neg_integer()}.

-spec allocators(map()) -> reply(map()).
allocators(Opts) when is_map(Opts) ->
    Limit = int(limit, Opts, 200, 1, 5000),
    Timeout = int(timeout_ms, Opts, 5000, 100, 60000),
    PerInstance = maps:get(per_instance, Opts, false) =:= true,
    case {pick(maps:get(allocators, Opts, [])), sort_key(maps:get(sort, Opts, usage))} of
        {{error, _} = E, _} ->
            E;
        {_, error} ->
            invalid(<<"sort is one of usage, carriers_size, name">>);
        {Allocs, Sort} ->
            run(fun() -> look(Allocs, PerInstance, Sort, Limit) end, Timeout + 1000, [])
    end;
allocators(_) ->
    bad_opts().

pick([]) ->
    erlang:system_info(alloc_util_allocators);
pick(Names) when is_list(Names) ->
    Known = erlang:system_info(alloc_util_allocators),
    lists:foldr(
      fun(_, {error, _} = E) -> E;
         (Name, Acc) ->
              case existing_atom(Name) of
                  {ok, A} ->
                      case lists:member(A, Known) of
                          true -> [A | Acc];
                          false -> not_an_allocator(Name)
                      end;
                  error ->
                      not_an_allocator(Name)
              end
      end, [], lists:usort(Names));
pick(_) ->
    bad_opts().

not_an_allocator(Name) when is_binary(Name) ->
    invalid(<<Name/binary, " is not an alloc_util allocator of this node">>);
not_an_allocator(_) ->
    bad_opts().

sort_key(usage) -> usage;
sort_key(carriers_size) -> carriers_size;
sort_key(name) -> name;
sort_key(_) -> error.

look(Allocs, PerInstance, Sort, Limit) ->
    Instances = lists:append([instances(A) || A <- Allocs]),
    Entries = case PerInstance of
                  true -> [entry(A, N, 1, K) || {A, N, K} <- Instances];
                  false -> [summed(A, Instances) || A <- Allocs,
                                                    lists:keymember(A, 1, Instances)]
              end,
    Sorted = lists:sort(fun(X, Y) -> before(Sort, X, Y) end, Entries),
    Listed = lists:sublist(Sorted, Limit),
    Totals = lists:foldl(fun(#{blocks_size := B, carriers_size := C}, #{blocks_size := TB,
                                                                        carriers_size := TC}) ->
                                 #{blocks_size => TB + B, carriers_size => TC + C}
                         end, #{blocks_size => 0, carriers_size => 0}, Entries),
    [{total, Total}, {code, Code}] = erlang:memory([total, code]),
    {ok, #{allocators => Listed, totals => Totals, mseg_cache => mseg_cache(),
           memory_total => Total, memory_code => Code, instances_seen => length(Instances),
           truncated => length(Entries) > Limit}}.

%% [{Alloc, InstanceNo, #{Kind => kind_sizes()}}] of one allocator; none when
%% it is disabled (+M<x>e false) or answers something else.
instances(A) ->
    case erlang:system_info({allocator, A}) of
        L when is_list(L) ->
            [{A, N, kinds(Props)} || {instance, N, Props} <- L, is_list(Props)];
        _ ->
            []
    end.

kinds(Props) ->
    maps:from_list([{K, kind(proplists:get_value(K, Props, []))} || K <- ?KINDS]).

-spec kind(term()) -> kind_sizes().
kind(Items) when is_list(Items) ->
    lists:foldl(fun item/2, zero(), Items);
kind(_) ->
    zero().

zero() ->
    #{blocks => 0, blocks_size => 0, carriers => 0, carriers_size => 0}.

%% OTP 23+ lists blocks per allocator type: {blocks, [{Type, [{count, ..},
%% {size, ..}]}]}; older releases had {blocks, N, ..} and {blocks_size, ..}.
item({blocks, PerType}, Acc) when is_list(PerType) ->
    lists:foldl(fun({_Type, L}, A) when is_list(L) ->
                        add(blocks_size, cur(lists:keyfind(size, 1, L)),
                            add(blocks, cur(lists:keyfind(count, 1, L)), A));
                   (_, A) -> A
                end, Acc, PerType);
item({blocks, N, _, _}, Acc) -> add(blocks, N, Acc);
item({blocks, N}, Acc) -> add(blocks, N, Acc);
item({blocks_size, S, _, _}, Acc) -> add(blocks_size, S, Acc);
item({blocks_size, S}, Acc) -> add(blocks_size, S, Acc);
item({carriers, N, _, _}, Acc) -> add(carriers, N, Acc);
item({carriers, N}, Acc) -> add(carriers, N, Acc);
item({carriers_size, S, _, _}, Acc) -> add(carriers_size, S, Acc);
item({carriers_size, S}, Acc) -> add(carriers_size, S, Acc);
item(_, Acc) -> Acc.

cur({_, Cur, _, _}) when is_integer(Cur) -> Cur;
cur({_, Cur}) when is_integer(Cur) -> Cur;
cur(_) -> 0.

add(K, V, M) when is_integer(V), V >= 0 -> maps:update_with(K, fun(X) -> X + V end, M);
add(_, _, M) -> M.

summed(A, Instances) ->
    Mine = [K || {A1, _, K} <- Instances, A1 =:= A],
    Sum = lists:foldl(
            fun(K, Acc) ->
                    maps:map(fun(Kind, S) -> plus(S, maps:get(Kind, K)) end, Acc)
            end, maps:from_list([{Kind, zero()} || Kind <- ?KINDS]), Mine),
    entry(A, -1, length(Mine), Sum).

plus(X, Y) -> maps:map(fun(F, V) -> V + maps:get(F, Y) end, X).

entry(A, N, Count, Kinds) ->
    Blocks = lists:sum([maps:get(blocks_size, maps:get(K, Kinds)) || K <- ?KINDS]),
    Carriers = lists:sum([maps:get(carriers_size, maps:get(K, Kinds)) || K <- ?KINDS]),
    Kinds#{alloc => atom_to_binary(A, utf8), instance => N, instances => Count,
           blocks_size => Blocks, carriers_size => Carriers, usage => ratio(Blocks, Carriers)}.

ratio(_, 0) -> 1.0;
ratio(Part, Whole) -> min(1.0, Part / Whole).

before(usage, #{usage := U1, carriers_size := C1}, #{usage := U2, carriers_size := C2}) ->
    {U1, -C1} =< {U2, -C2};
before(carriers_size, #{carriers_size := C1, alloc := A1}, #{carriers_size := C2, alloc := A2}) ->
    {-C1, A1} =< {-C2, A2};
before(name, #{alloc := A1, instance := I1}, #{alloc := A2, instance := I2}) ->
    {A1, I1} =< {A2, I2}.

%% The segment cache of mseg_alloc (absent when the node runs without it).
mseg_cache() ->
    case catch erlang:system_info({allocator, mseg_alloc}) of
        L when is_list(L) ->
            [cache(N, Props) || {instance, N, Props} <- L, is_list(Props)];
        _ ->
            []
    end.

cache(N, Props) ->
    Kind = proplists:get_value(memkind, Props, []),
    Status = proplists:get_value(status, Kind, []),
    Calls = proplists:get_value(calls, Kind, []),
    Hits = case lists:keyfind(cache_hits, 1, Status) of
               {cache_hits, H} when is_integer(H) -> H;
               _ -> 0
           end,
    Allocs = case lists:keyfind(mseg_alloc, 1, Calls) of
                 {mseg_alloc, Giga, Units} when is_integer(Giga), is_integer(Units) ->
                     Giga * 1000000000 + Units;
                 _ -> 0
             end,
    #{instance => N, hits => Hits, calls => Allocs, hit_rate => ratio(Hits, Allocs)}.
