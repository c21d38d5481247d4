%%% ===========================================================================
%%% beamside_vm -- the kernel/erts core sections of a beamside snapshot.
%%% ===========================================================================
%%%
%%% section(Name, Opts) -> map().  Called by beamside_agent:collect/1, which
%%% wraps every call so that an exception becomes `{error, Reason}' for that
%%% section only.  Everything here is read-only: no flag is changed, no
%%% process is started, nothing is left behind.  Per section (cost measured on
%%% a 2-core VM, OTP 25, idle node):
%%%
%%%   memory           erlang:memory() plus persistent_term memory.     ~10 us
%%%   allocators       erlang:system_info({allocator_sizes, A}) summed over
%%%                    instances, per alloc_util allocator: blocks and
%%%                    carriers sizes of mbcs, mbcs_pool, sbcs.  Bounded:
%%%                    at most 64 allocators.                         ~1-3 ms
%%%                    And under the key mseg_alloc, its segment cache
%%%                    summed over its instances ({allocator, mseg_alloc}):
%%%                    cache_calls (mseg_alloc calls, giga and units added
%%%                    up), cache_hits (served from the cache),
%%%                    cached_segments, instances (absent when the node
%%%                    runs without mseg_alloc): 20-50 us at 2 schedulers,
%%%                    ~0.4 ms at 64 (OTP 25 and 28).  Carrier counts per
%%%                    allocator would need {allocator, A} for every
%%%                    allocator: 0.2-0.4 ms more at 2 schedulers but 6-13
%%%                    ms at 64, so they are left to the Memory/Allocators
%%%                    tool (beamside_ops_alloc).
%%%   allocated_areas  erlang:system_info(allocated_areas).              ~5 us
%%%   limits           counts and limits: processes, ports, atoms, ets,
%%%                    modules loaded and with old code (one check_old_code
%%%                    BIF per module), registered names, dist links, the
%%%                    poll set's max_fds and size, open fds (Linux: entries of
%%%                    /proc/self/fd, Opts fds => false to skip) and the
%%%                    fd soft limit, socket-NIF sockets, persistent terms.
%%%                                                                  ~100 us
%%%   system           schedulers, processors, flags, GC defaults, times. ~20 us
%%%   run_queues       statistics(run_queue_lengths_all | active_tasks_all).
%%%   statistics       context switches, reductions, exact reductions, GC,
%%%                    io, runtime and wall clock totals.
%%%   scheduler_utilization
%%%                    only when scheduler_wall_time is on (we never turn it
%%%                    on here): per scheduler busy ratio over the window
%%%                    since the previous collect (kept in beamside_sysmon's
%%%                    table when attached) else since it was turned on.
%%%   msacc            statistics(microstate_accounting) summed per thread
%%%                    type, microseconds; `enabled' is false when every
%%%                    counter is 0 (msacc never ran).                ~100 us
%%%   ports            walk of erlang:ports() capped by Opts max_ports
%%%                    (10000): count, memory, queue bytes and io bytes per
%%%                    driver (a
%%%                    spawned program counts as `spawn', an fd port as `fd';
%%%                    at most 32 kinds, the rest is `other').
%%%   ets              walk of ets:all() capped by max_ets_tables (10000):
%%%                    table count, and the top_n table *names* by memory
%%%                    (tables sharing a name are summed: #{name, tables,
%%%                    memory_bytes, size}).  Three ets:info/2 per table.
%%%   kernel           global name/lock table sizes, logger handler count
%%%                    and primary level, heart running, applications loaded
%%%                    (ETS reads, no server calls).
%%%   dist             by default an aggregate over every connection, made
%%%                    here so that the reply (and the series) do not grow
%%%                    with the mesh: peer counts by state (up | pending)
%%%                    and type (visible | hidden), and per controller kind
%%%                      sockets    (port controllers, plain TCP): count,
%%%                                 sums of recv/send bytes and packets
%%%                                 (one inet:getstat of 5 counters per
%%%                                 peer), output queued (send_pend, which
%%%                                 is the port's queue_size) summed and
%%%                                 its max, and `busy': ports whose queue
%%%                                 is at or over their high_watermark, as
%%%                                 the inet driver then marks the port
%%%                                 busy and the VM keeps further output
%%%                                 in the connection's buffer, suspending
%%%                                 senders (busy_dist_port, counted by
%%%                                 sysmon) once that buffer reaches
%%%                                 dist_buf_busy_limit; the buffer itself
%%%                                 is readable only by the connection's
%%%                                 owner (erlang:dist_get_stat/1 needs its
%%%                                 handle).  high_watermark is read only
%%%                                 for ports with a non-empty queue.
%%%                      processes  (process controllers, TLS): count,
%%%                                 memory and message queue summed and
%%%                                 their max, reductions summed (one
%%%                                 process_info per peer).
%%%                    Per peer only with Opts dist_per_peer => true: then
%%%                    also `peers', the first max_peers (100) connections
%%%                    with inet:getstat of 10 counters and 4 port_info
%%%                    items (a port) or 6 process_info items (a process),
%%%                    and `omitted', the connections left out.  Cost per
%%%                    peer on a 2-core VM, OTP 25: about 1.3 us aggregate
%%%                    only, 6.6 us with the per-peer detail.
%%%   time             system_time_us (os:system_time/1, the OS clock),
%%%                    erlang_system_time_us (erlang:system_time/1, which
%%%                    time correction may hold back), utc_offset_s (local
%%%                    time minus UTC, from one universaltime reading).  ~5 us
%%%   dist_nodes       erlang:nodes(visible), sorted, at most 1000.    ~1 us
%%%
%%% old_code() -> [module()]: modules with old code, one check_old_code BIF
%%% per loaded module; beamside_agent runs it once per collect and hands the
%%% result to `limits' (count) and `alarms' (list) through the context.
%%% ===========================================================================
-module(beamside_vm).

-export([section/3, old_code/0]).

-define(MAX_DIST_NODES, 1000).

-define(MAX_ALLOCATORS, 64).
-define(MAX_PORT_KINDS, 32).
-define(SOCK0, {0, 0, 0, 0, 0, 0, 0, 0}).
-define(PROC0, {0, 0, 0, 0, 0, 0}).
-define(SOCKET_STATS, [recv_oct, recv_cnt, recv_max, recv_avg, recv_dvi,
                       send_oct, send_cnt, send_max, send_avg, send_pend]).

%% Ctx: #{old_code => [module()] | {error, _}} (see beamside_agent).
-spec section(atom(), map(), map()) -> term().
section(memory, _, _) -> memory();
section(allocators, _, _) -> allocators();
section(allocated_areas, _, _) -> allocated_areas();
section(limits, Opts, Ctx) -> limits(Opts, Ctx);
section(system, _, _) -> system();
section(run_queues, _, _) -> run_queues();
section(statistics, _, _) -> statistics();
section(scheduler_utilization, _, _) -> scheduler_utilization();
section(msacc, _, _) -> msacc();
section(ports, Opts, _) -> ports(Opts);
section(dist, Opts, _) -> dist(Opts);
section(ets, Opts, _) -> ets(Opts);
section(kernel, _, _) -> kernel();
section(time, _, _) -> time_section();
section(dist_nodes, _, _) -> lists:sublist(lists:sort(erlang:nodes(visible)), ?MAX_DIST_NODES);
section(Other, _, _) -> {error, {unknown_section, Other}}.

-spec old_code() -> [module()].
old_code() ->
    [M || M <- erlang:loaded(), erlang:check_old_code(M)].

time_section() ->
    Utc = erlang:universaltime(),
    Local = erlang:universaltime_to_localtime(Utc),
    #{system_time_us => os:system_time(microsecond),
      erlang_system_time_us => erlang:system_time(microsecond),
      utc_offset_s => offset_s(Local, Utc)}.

%% Local minus UTC in seconds; the two dates are at most a day apart (no
%% calendar module: it may not be loaded, and we never load code).
offset_s({D1, {H1, M1, S1}}, {D2, {H2, M2, S2}}) ->
    Days = if D1 =:= D2 -> 0;
              D1 > D2 -> 1;
              true -> -1
           end,
    Days * 86400 + (H1 - H2) * 3600 + (M1 - M2) * 60 + (S1 - S2).

%%% ---------------------------------------------------------------------------

memory() ->
    M = maps:from_list(erlang:memory()),
    case catch persistent_term:info() of
        #{memory := PT} -> M#{persistent_term => PT};
        _ -> M
    end.

allocators() ->
    Allocs = lists:sublist(erlang:system_info(alloc_util_allocators), ?MAX_ALLOCATORS),
    Sizes = maps:from_list([{A, S} || A <- Allocs, is_map(S = alloc_sizes(A))]),
    case mseg_cache() of
        #{instances := 0} -> Sizes;
        Cache -> Sizes#{mseg_alloc => Cache}
    end.

alloc_sizes(A) ->
    case erlang:system_info({allocator_sizes, A}) of
        Instances when is_list(Instances) ->
            Zero = #{mbcs_blocks_size => 0, mbcs_carriers_size => 0,
                     mbcs_pool_blocks_size => 0, mbcs_pool_carriers_size => 0,
                     sbcs_blocks_size => 0, sbcs_carriers_size => 0, instances => 0},
            lists:foldl(fun instance/2, Zero, Instances);
        _ ->
            disabled
    end.

instance({instance, _, Kinds}, Acc0) when is_list(Kinds) ->
    Acc = maps:update_with(instances, fun(N) -> N + 1 end, Acc0),
    lists:foldl(fun kind/2, Acc, Kinds);
instance(_, Acc) ->
    Acc.

kind({Kind, Items}, Acc) when (Kind =:= mbcs orelse Kind =:= mbcs_pool orelse Kind =:= sbcs),
                              is_list(Items) ->
    {BKey, CKey} = case Kind of
                       mbcs -> {mbcs_blocks_size, mbcs_carriers_size};
                       mbcs_pool -> {mbcs_pool_blocks_size, mbcs_pool_carriers_size};
                       sbcs -> {sbcs_blocks_size, sbcs_carriers_size}
                   end,
    lists:foldl(
      fun({blocks, PerType}, A) when is_list(PerType) ->
              %% OTP 23+: [{Type, [{size, Cur, LastMax, Max} | _]}]
              Sum = lists:sum([cur(lists:keyfind(size, 1, L))
                               || {_T, L} <- PerType, is_list(L)]),
              add(BKey, Sum, A);
         ({blocks_size, Cur, _, _}, A) -> add(BKey, Cur, A);   % before OTP 23
         ({blocks_size, Cur}, A) -> add(BKey, Cur, A);
         ({carriers_size, Cur, _, _}, A) -> add(CKey, Cur, A);
         ({carriers_size, Cur}, A) -> add(CKey, Cur, A);
         (_, A) -> A
      end, Acc, Items);
kind(_, Acc) ->
    Acc.

mseg_cache() ->
    Zero = #{cache_calls => 0, cache_hits => 0, cached_segments => 0, instances => 0},
    case erlang:system_info({allocator, mseg_alloc}) of
        Instances when is_list(Instances) ->
            lists:foldl(fun mseg_instance/2, Zero, Instances);
        _ ->
            Zero
    end.

mseg_instance({instance, _, Props}, Acc0) when is_list(Props) ->
    Kind = proplists:get_value(memkind, Props, []),
    Status = proplists:get_value(status, Kind, []),
    Calls = proplists:get_value(calls, Kind, []),
    Acc = maps:update_with(instances, fun(N) -> N + 1 end, Acc0),
    A1 = case lists:keyfind(mseg_alloc, 1, Calls) of
             {mseg_alloc, Giga, Units} -> add(cache_calls, Giga * 1000000000 + Units, Acc);
             _ -> Acc
         end,
    A2 = case lists:keyfind(cache_hits, 1, Status) of
             {cache_hits, Hits} -> add(cache_hits, Hits, A1);
             _ -> A1
         end,
    case lists:keyfind(cached_segments, 1, Status) of
        {cached_segments, Cached} -> add(cached_segments, Cached, A2);
        _ -> A2
    end;
mseg_instance(_, Acc) ->
    Acc.

cur({size, Cur, _, _}) when is_integer(Cur) -> Cur;
cur({size, Cur}) when is_integer(Cur) -> Cur;
cur(_) -> 0.

add(K, V, M) when is_integer(V) -> maps:update_with(K, fun(X) -> X + V end, V, M);
add(_, _, M) -> M.

allocated_areas() ->
    maps:from_list([{element(1, T), element(2, T)}
                    || T <- erlang:system_info(allocated_areas),
                       is_tuple(T), tuple_size(T) >= 2, is_integer(element(2, T))]).

%%% ---------------------------------------------------------------------------

limits(Opts, Ctx) ->
    Loaded = erlang:loaded(),
    OldCode = case maps:get(old_code, Ctx, undefined) of
                  L when is_list(L) -> L;
                  _ -> old_code()
              end,
    Base = #{process_count => erlang:system_info(process_count),
             process_limit => erlang:system_info(process_limit),
             port_count => erlang:system_info(port_count),
             port_limit => erlang:system_info(port_limit),
             atom_count => erlang:system_info(atom_count),
             atom_limit => erlang:system_info(atom_limit),
             ets_count => erlang:system_info(ets_count),
             ets_limit => erlang:system_info(ets_limit),
             modules_loaded => length(Loaded),
             modules_old_code => length(OldCode),
             registered_names => length(erlang:registered()),
             dist_visible => length(erlang:nodes(visible)),
             dist_hidden => length(erlang:nodes(hidden)),
             dist_links => length(erlang:nodes(connected))},
    lists:foldl(fun({K, F}, Acc) ->
                        case catch F() of
                            V when is_integer(V) -> Acc#{K => V};
                            _ -> Acc
                        end
                end, Base,
                [{persistent_terms, fun() -> maps:get(count, persistent_term:info()) end},
                 {max_fds, fun max_fds/0},
                 {poll_set_fds, fun poll_set_fds/0},
                 {socket_count, fun socket_count/0}
                 | case beamside_agent:opt(fds, Opts, true) of
                       true -> [{open_fds, fun open_fds/0}, {fd_limit, fun fd_limit/0}];
                       _ -> []
                   end]).

max_fds() ->
    Sets = lists:flatten([erlang:system_info(check_io)]),
    lists:max([N || {max_fds, N} <- Sets, is_integer(N)]).

poll_set_fds() ->
    Sets = lists:flatten([erlang:system_info(check_io)]),
    lists:sum([N || {total_poll_set_size, N} <- Sets, is_integer(N)]).

socket_count() ->
    %% Only when the socket module is in use: never load it ourselves.
    case erlang:module_loaded(socket) of
        true -> socket:number_of();
        false -> 0
    end.

open_fds() ->
    case os:type() of
        {unix, linux} ->
            {ok, Names} = prim_file:list_dir("/proc/self/fd"),
            length(Names) - 1;                  % the fd list_dir itself used
        _ ->
            undefined
    end.

fd_limit() ->
    case os:type() of
        {unix, linux} ->
            {ok, Bin} = prim_file:read_file("/proc/self/limits"),
            [Line] = [L || L <- binary:split(Bin, <<"\n">>, [global]),
                           binary:match(L, <<"Max open files">>) =/= nomatch],
            [_, _, _, Soft | _] = binary:split(Line, <<" ">>, [global, trim_all]),
            binary_to_integer(Soft);
        _ ->
            undefined
    end.

%%% ---------------------------------------------------------------------------

system() ->
    GC = erlang:system_info(garbage_collection),
    Start = erlang:system_info(start_time) + erlang:time_offset(),
    Base = #{schedulers => erlang:system_info(schedulers),
             schedulers_online => erlang:system_info(schedulers_online),
             dirty_cpu_schedulers => erlang:system_info(dirty_cpu_schedulers),
             dirty_cpu_schedulers_online => erlang:system_info(dirty_cpu_schedulers_online),
             dirty_io_schedulers => erlang:system_info(dirty_io_schedulers),
             thread_pool_size => erlang:system_info(thread_pool_size),
             wordsize => erlang:system_info(wordsize),
             smp_support => erlang:system_info(smp_support),
             threads => erlang:system_info(threads),
             time_correction => erlang:system_info(time_correction),
             time_warp_mode => erlang:system_info(time_warp_mode),
             port_parallelism => erlang:system_info(port_parallelism),
             kernel_poll => erlang:system_info(kernel_poll),
             multi_scheduling => erlang:system_info(multi_scheduling),
             dist_buf_busy_limit => erlang:system_info(dist_buf_busy_limit),
             context_reductions => erlang:system_info(context_reductions),
             os_pid => list_to_integer(os:getpid()),
             start_time_ms => erlang:convert_time_unit(Start, native, millisecond),
             system_time_ms => os:system_time(millisecond),
             time_offset_us => erlang:time_offset(microsecond),
             min_heap_size => proplists:get_value(min_heap_size, GC),
             min_bin_vheap_size => proplists:get_value(min_bin_vheap_size, GC),
             fullsweep_after => proplists:get_value(fullsweep_after, GC),
             max_heap_size => case proplists:get_value(max_heap_size, GC) of
                                  #{size := S} -> S;
                                  S when is_integer(S) -> S;
                                  _ -> 0
                              end},
    %% `unknown' where the OS does not say; cpu_quota is OTP 23+.
    lists:foldl(fun(K, Acc) ->
                        case catch erlang:system_info(K) of
                            N when is_integer(N) -> Acc#{K => N};
                            _ -> Acc
                        end
                end, Base, [logical_processors, logical_processors_available,
                            logical_processors_online, cpu_quota]).

%%% ---------------------------------------------------------------------------

run_queues() ->
    N = erlang:system_info(schedulers),
    {Normal, Dirty} = lists:split(N, erlang:statistics(run_queue_lengths_all)),
    {ANormal, ADirty} = lists:split(N, erlang:statistics(active_tasks_all)),
    {DCpu, DIo} = dirty_pair(Dirty),
    {ADCpu, ADIo} = dirty_pair(ADirty),
    #{normal => lists:sum(Normal),
      dirty_cpu => DCpu,
      dirty_io => DIo,
      per_scheduler => Normal,
      active_tasks => lists:sum(ANormal),
      active_tasks_dirty_cpu => ADCpu,
      active_tasks_dirty_io => ADIo,
      active_tasks_per_scheduler => ANormal}.

dirty_pair([Cpu, Io | _]) -> {Cpu, Io};
dirty_pair([Cpu]) -> {Cpu, 0};
dirty_pair([]) -> {0, 0}.

statistics() ->
    {CS, _} = erlang:statistics(context_switches),
    {Red, _} = erlang:statistics(reductions),
    {ExRed, _} = erlang:statistics(exact_reductions),
    {GCs, Words, _} = erlang:statistics(garbage_collection),
    {{input, In}, {output, Out}} = erlang:statistics(io),
    {Runtime, _} = erlang:statistics(runtime),
    {Wall, _} = erlang:statistics(wall_clock),
    #{context_switches => CS,
      reductions => Red,
      exact_reductions => ExRed,
      gc_count => GCs,
      gc_words_reclaimed => Words,
      io_input => In,
      io_output => Out,
      runtime_ms => Runtime,
      wall_clock_ms => Wall}.

%%% ---------------------------------------------------------------------------

scheduler_utilization() ->
    case erlang:statistics(scheduler_wall_time_all) of
        undefined ->
            #{enabled => false};
        Now0 ->
            Now = lists:sort(Now0),
            {Prev, Window} = case beamside_sysmon:swap_sample(swt, Now) of
                                 undefined -> {[], since_enabled};
                                 P -> {P, since_previous}
                             end,
            NS = erlang:system_info(schedulers),
            NCpu = erlang:system_info(dirty_cpu_schedulers),
            Utils = [{Id, util(Id, A, T, Prev)} || {Id, A, T} <- Now],
            {Normal, Rest} = lists:partition(fun({Id, _}) -> Id =< NS end, Utils),
            {Cpu, Io} = lists:partition(fun({Id, _}) -> Id =< NS + NCpu end, Rest),
            Vals = fun(L) -> [U || {_, U} <- L] end,
            #{enabled => true,
              window => Window,
              normal => Vals(Normal),
              dirty_cpu => Vals(Cpu),
              dirty_io => Vals(Io),
              total => avg(Vals(Normal) ++ Vals(Cpu))}
    end.

util(Id, A, T, Prev) ->
    {DA, DT} = case lists:keyfind(Id, 1, Prev) of
                   {Id, A0, T0} -> {A - A0, T - T0};
                   false -> {A, T}
               end,
    case DT > 0 of
        true -> DA / DT;
        false -> 0.0
    end.

avg([]) -> 0.0;
avg(L) -> lists:sum(L) / length(L).

msacc() ->
    case erlang:statistics(microstate_accounting) of
        Threads when is_list(Threads) ->
            ByType = lists:foldl(
                       fun(#{type := Type, counters := C}, Acc) ->
                               Old = maps:get(Type, Acc, #{}),
                               New = maps:fold(fun(S, V, A) ->
                                                       maps:update_with(S, fun(X) -> X + V end,
                                                                        V, A)
                                               end, Old, C),
                               Acc#{Type => New};
                          (_, Acc) ->
                               Acc
                       end, #{}, Threads),
            Us = maps:map(fun(_, C) ->
                                  maps:map(fun(_, V) ->
                                                   erlang:convert_time_unit(V, perf_counter,
                                                                            microsecond)
                                           end, C)
                          end, ByType),
            Enabled = lists:any(fun(C) -> lists:any(fun(V) -> V > 0 end, maps:values(C)) end,
                                maps:values(ByType)),
            Counts = lists:foldl(fun(#{type := T}, A) ->
                                         maps:update_with(T, fun(X) -> X + 1 end, 1, A);
                                    (_, A) -> A
                                 end, #{}, Threads),
            case Enabled of
                true -> #{enabled => true, threads => Counts, microseconds => Us};
                false -> #{enabled => false}
            end;
        _ ->
            #{enabled => false}
    end.

%%% ---------------------------------------------------------------------------

ports(Opts) ->
    Max = beamside_agent:int_opt(max_ports, Opts, 10000, {0, 10000000}),
    All = erlang:ports(),
    {Kinds, Walked} = port_walk(All, Max, #{}, 0),
    #{count => length(All),
      walked => Walked,
      truncated => Walked < length(All) andalso Walked >= Max,
      by_kind => maps:map(fun(_, {C, M, Q, I, O}) ->
                                  #{count => C, memory => M, queue_size => Q,
                                    input => I, output => O}
                          end, Kinds)}.

port_walk([], _, Acc, N) -> {Acc, N};
port_walk(_, Max, Acc, N) when N >= Max -> {Acc, N};
port_walk([P | Ps], Max, Acc, N) ->
    case port_kind(P) of
        undefined ->
            port_walk(Ps, Max, Acc, N);
        Kind0 ->
            Kind = case maps:is_key(Kind0, Acc) orelse map_size(Acc) < ?MAX_PORT_KINDS of
                       true -> Kind0;
                       false -> <<"other">>
                   end,
            Mem = port_int(P, memory),
            Queue = port_int(P, queue_size),
            In = port_int(P, input),
            Out = port_int(P, output),
            {C, M, Q, I, O} = maps:get(Kind, Acc, {0, 0, 0, 0, 0}),
            port_walk(Ps, Max, Acc#{Kind => {C + 1, M + Mem, Q + Queue, I + In, O + Out}}, N + 1)
    end.

port_kind(P) ->
    case erlang:port_info(P, name) of
        {name, Name} ->
            case erlang:port_info(P, os_pid) of
                {os_pid, OsPid} when is_integer(OsPid) -> <<"spawn">>;
                _ -> driver_name(Name)
            end;
        undefined ->
            undefined
    end.

driver_name(Name) ->
    Bin = beamside_agent:to_bin(Name),
    case binary:split(Bin, <<"/">>) of
        [In, Out] when In =/= <<>>, Out =/= <<>> ->
            case digits(In) andalso digits(Out) of
                true -> <<"fd">>;
                false -> binary:part(Bin, 0, min(32, byte_size(Bin)))
            end;
        _ ->
            binary:part(Bin, 0, min(32, byte_size(Bin)))
    end.

digits(B) -> lists:all(fun(C) -> C >= $0 andalso C =< $9 end, binary_to_list(B)).

port_int(P, Item) ->
    case erlang:port_info(P, Item) of
        {Item, V} when is_integer(V) -> V;
        _ -> 0
    end.

%%% ---------------------------------------------------------------------------

dist(Opts) ->
    PerPeer = beamside_agent:opt(dist_per_peer, Opts, false) =:= true,
    Max = beamside_agent:int_opt(max_peers, Opts, 100, {0, 100000}),
    Ctrl = erlang:system_info(dist_ctrl),
    Types = node_types(),
    UpSet = maps:from_list([{N, up} || {N, _} <- Ctrl]),
    Pending = [N || N <- maps:keys(Types), not maps:is_key(N, UpSet)],
    Counts0 = lists:foldl(fun(N, Acc) -> count_peer(pending, type_of(N, Types), Acc) end,
                          #{up => #{visible => 0, hidden => 0},
                            pending => #{visible => 0, hidden => 0}}, Pending),
    {Counts, Sock, Proc, Detail} =
        dist_walk(Ctrl, Types, PerPeer, Max, {Counts0, ?SOCK0, ?PROC0, []}),
    Base = #{per_peer => PerPeer,
             up => length(Ctrl),
             pending => length(Pending),
             peer_counts => Counts,
             sockets => sock_map(Sock),
             processes => proc_map(Proc),
             buf_busy_limit => erlang:system_info(dist_buf_busy_limit)},
    case PerPeer of
        true ->
            Omitted = max(length(Ctrl) - Max, 0),
            Base#{peers => lists:reverse(Detail), omitted => Omitted, truncated => Omitted > 0};
        false ->
            Base
    end.

%% Every connected node's type in one BIF (erlang:nodes/2, OTP 25.1+), else
%% visible and hidden lists (a pending node is then of type `unknown').
node_types() ->
    try
        maps:from_list([{N, T} || {N, #{node_type := T}}
                                      <- erlang:nodes(connected, #{node_type => true})])
    catch error:_ ->
            maps:merge(maps:from_list([{N, hidden} || N <- erlang:nodes(hidden)]),
                       maps:from_list([{N, visible} || N <- erlang:nodes(visible)]))
    end.

type_of(N, Types) -> maps:get(N, Types, unknown).

count_peer(State, Type, Acc) ->
    maps:update_with(State, fun(M) -> maps:update_with(Type, fun(X) -> X + 1 end, 1, M) end,
                     #{Type => 1}, Acc).

dist_walk([], _, _, _, {C, S, P, D}) ->
    {C, S, P, D};
dist_walk([{N, Ctl} | Rest], Types, PerPeer, Left, {C0, S0, P0, D0}) ->
    Type = type_of(N, Types),
    C = count_peer(up, Type, C0),
    Acc = case PerPeer andalso Left > 0 of
              true ->
                  %% the detailed readings feed the aggregate too: both agree
                  Ctrl = controller(Ctl),
                  {C, add_detail(Ctl, Ctrl, S0), add_proc(Ctrl, P0),
                   [#{node => N, type => Type, state => up, controller => Ctrl} | D0]};
              false when is_port(Ctl) ->
                  {C, add_sock(Ctl, S0), P0, D0};
              false when is_pid(Ctl) ->
                  {C, S0, add_proc(#{kind => process, process => proc_info(Ctl)}, P0), D0};
              false ->
                  {C, S0, P0, D0}
          end,
    dist_walk(Rest, Types, PerPeer, Left - 1, Acc).

%% {Count, RecvOct, RecvCnt, SendOct, SendCnt, QueueSum, QueueMax, Busy}
add_sock(Port, Acc) ->
    case catch inet:getstat(Port, [recv_oct, recv_cnt, send_oct, send_cnt, send_pend]) of
        {ok, L} when is_list(L) -> add_stats(Port, maps:from_list(L), Acc);
        _ -> Acc                                   % closed meanwhile
    end.

add_detail(Port, #{kind := port, socket := S}, Acc) when map_size(S) > 0 ->
    add_stats(Port, S, Acc);
add_detail(_, _, Acc) ->
    Acc.

add_stats(Port, S, {N, RO, RC, SO, SC, QS, QM, B}) ->
    G = fun(K) -> case maps:get(K, S, 0) of V when is_integer(V) -> V; _ -> 0 end end,
    Q = G(send_pend),
    {N + 1, RO + G(recv_oct), RC + G(recv_cnt), SO + G(send_oct), SC + G(send_cnt),
     QS + Q, max(QM, Q), B + busy(Port, Q)}.

%% The inet driver marks a port busy when its queue reaches high_watermark.
busy(_, 0) -> 0;
busy(Port, Q) ->
    case high_watermark(Port) of
        High when is_integer(High), Q >= High -> 1;
        _ -> 0
    end.

high_watermark(Port) ->
    case catch inet:getopts(Port, [high_watermark]) of
        {ok, [{high_watermark, H}]} -> H;
        _ -> undefined
    end.

%% {Count, Memory, MemoryMax, Queue, QueueMax, Reductions}
add_proc(#{kind := process, process := I}, {N, M, MM, Q, QM, R}) when map_size(I) > 0 ->
    G = fun(K) -> case maps:get(K, I, 0) of V when is_integer(V) -> V; _ -> 0 end end,
    {N + 1, M + G(memory), max(MM, G(memory)), Q + G(message_queue_len),
     max(QM, G(message_queue_len)), R + G(reductions)};
add_proc(_, Acc) ->
    Acc.

sock_map({N, RO, RC, SO, SC, QS, QM, B}) ->
    #{count => N, recv_bytes => RO, recv_packets => RC, send_bytes => SO,
      send_packets => SC, output_queue_bytes => QS, output_queue_max_bytes => QM, busy => B}.

proc_map({N, M, MM, Q, QM, R}) ->
    #{count => N, memory_bytes => M, memory_max_bytes => MM, message_queue_len => Q,
      message_queue_len_max => QM, reductions => R}.

controller(Port) when is_port(Port) ->
    Stats = case catch inet:getstat(Port, ?SOCKET_STATS) of
                {ok, L} when is_list(L) -> maps:from_list(L);
                _ -> #{}
            end,
    Info = maps:from_list([{K, port_int(Port, K)} || K <- [queue_size, memory, input, output]]),
    #{kind => port, socket => Stats, port => Info};
controller(Pid) when is_pid(Pid) ->
    #{kind => process, process => proc_info(Pid)};
controller(_) ->
    #{kind => unknown}.

proc_info(Pid) ->
    Items = [memory, message_queue_len, reductions, heap_size, total_heap_size, stack_size],
    case erlang:process_info(Pid, Items) of
        L when is_list(L) -> maps:from_list(L);
        undefined -> #{}
    end.

%%% ---------------------------------------------------------------------------

ets(Opts) ->
    Max = beamside_agent:int_opt(max_ets_tables, Opts, 10000, {0, 10000000}),
    TopN = beamside_agent:int_opt(top_n, Opts, 10, {0, 100}),
    Wordsize = erlang:system_info(wordsize),
    All = ets:all(),
    Walk = lists:sublist(All, Max),
    ByName = lists:foldl(
               fun(T, Acc) ->
                       case {ets:info(T, name), ets:info(T, memory), ets:info(T, size)} of
                           {Name, Mem, Size} when is_atom(Name), is_integer(Mem),
                                                  is_integer(Size) ->
                               {C, M, S} = maps:get(Name, Acc, {0, 0, 0}),
                               Acc#{Name => {C + 1, M + Mem, S + Size}};
                           _ ->
                               Acc                          % deleted meanwhile
                       end
               end, #{}, Walk),
    Sorted = lists:reverse(lists:keysort(2, [{N, M, C, S}
                                             || {N, {C, M, S}} <- maps:to_list(ByName)])),
    Top = [#{name => N, tables => C, memory_bytes => M * Wordsize, size => S}
           || {N, M, C, S} <- lists:sublist(Sorted, TopN)],
    #{tables => length(All),
      objects => lists:sum([S || {_, _, _, S} <- Sorted]),
      walked => length(Walk),
      truncated => length(All) > Max,
      top_memory => Top}.

kernel() ->
    Size = fun(T) ->
                   case ets:info(T, size) of
                       N when is_integer(N) -> N;
                       undefined -> 0
                   end
           end,
    Base = #{global_names => Size(global_names),
             global_locks => Size(global_locks),
             heart => whereis(heart) =/= undefined,
             applications_loaded => length(application:loaded_applications())},
    Logger = try
                 #{logger_handlers => length(logger:get_handler_ids()),
                   logger_level => maps:get(level, logger:get_primary_config())}
             catch _:_ -> #{}
             end,
    maps:merge(Base, Logger).
