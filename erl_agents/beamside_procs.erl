%%% ===========================================================================
%%% beamside_procs -- the bounded process walk behind the message queue stats.
%%% ===========================================================================
%%%
%%% walk(Opts) -> map() | {error, Reason}
%%%   Asks processes for their message_queue_len (one single-item
%%%   process_info BIF each: the cheapest way to read it, about 0.16 us), in a
%%%   fresh low-priority process whose heap is sized up front for the pid
%%%   list.  Processes that exit during the walk answer `undefined' and are
%%%   counted in `vanished'; nothing else is asked of them.
%%%
%%%   Chunks.  When the sidecar is attached (beamside_sysmon's table exists)
%%%   and there are more than walk_chunk processes (50000), one call walks
%%%   one chunk of the process table -- chunk i of K = ceil(N / walk_chunk)
%%%   equal chunks, the next one at every call -- and reports the aggregate
%%%   of the latest result of every chunk (each kept in the sysmon table, at
%%%   most walk_max_age_ms old, 600000).  So the cost of a call is bounded by
%%%   the chunk, and a process is looked at every K calls: with 100,050
%%%   processes, K = 3 and, at the default 15 s interval, every 45 s.
%%%   chunks, chunk, covered (processes the aggregate is made of) and
%%%   oldest_ms say what was aggregated; partial => true when a chunk has no
%%%   (fresh) result yet.  Positions in the table move as processes come and
%%%   go, so with chunks the aggregate is approximate (a process may be seen
%%%   twice or missed in a round); walk_chunk => 0, walk_memory => true, or
%%%   not being attached walks everything in one call.
%%%
%%%   Limits (all mandatory, all options of collect/1):
%%%     max_processes    at most this many processes (the first ones of the
%%%                      table) are ever looked at (200000);
%%%     walk_chunk       at most this many per call when attached (50000);
%%%     walk_timeout_ms  the walk stops when this time is spent (2000 ms;
%%%                      checked every 1024 processes) and the walker is
%%%                      killed if it overruns by another second;
%%%     top_n            at most this many offenders are described (10, <= 100).
%%%   When a limit cuts the walk short: truncated => true and truncated_by =>
%%%   max_processes | time.
%%%
%%%   Reply: process_count (at start), walked (this call), vanished (this
%%%   call), covered, chunks, chunk, oldest_ms, partial, truncated,
%%%   truncated_by, duration_us, mq_sum, mq_max, mq_nonzero (processes with
%%%   a non-empty queue), mq_above (queue > mq_threshold), mq_threshold,
%%%   top_message_queue => [#{pid, name, current_function, initial_call,
%%%   message_queue_len, memory}] (longest first; pid, name and functions as
%%%   short binaries; the figures are read again when described).  With
%%%   walk_memory => true also memory_sum, memory_max, memory_above (>
%%%   memory_threshold bytes), memory_threshold and top_memory: this asks
%%%   every process for its memory too, which costs about 7 times the plain
%%%   walk, and always walks everything.
%%%
%%%   Cost (2-core VM, OTP 25, 100,000 idle processes): building the pid
%%%   list about 4 ms, then about 0.16 us per process looked at: 20 ms for a
%%%   whole walk of 100,000 processes; with the default chunk a call walks
%%%   a third or a half of them.  About 3 words of transient heap per process.
%%% ===========================================================================
-module(beamside_procs).

-export([walk/1]).

-define(CHECK_EVERY, 1024).
-define(MAX_HEAP_WORDS, 16000000).

-spec walk(map()) -> map() | {error, term()}.
walk(Opts) ->
    A = beamside_agent,
    TimeoutMs = A:int_opt(walk_timeout_ms, Opts, 2000, {1, 600000}),
    WalkMem = A:opt(walk_memory, Opts, false) =:= true,
    Count = erlang:system_info(process_count),
    Cfg = #{max => A:int_opt(max_processes, Opts, 200000, {0, 134217727}),
            chunk => case WalkMem of
                         true -> 0;
                         false -> A:int_opt(walk_chunk, Opts, 50000, {0, 134217727})
                     end,
            max_age => A:int_opt(walk_max_age_ms, Opts, 600000, {0, 86400000}),
            timeout => TimeoutMs,
            top_n => A:int_opt(top_n, Opts, 10, {0, 100}),
            mq_threshold => A:int_opt(mq_threshold, Opts, 1000, {0, 1 bsl 40}),
            memory_threshold => A:int_opt(memory_threshold, Opts, 104857600, {0, 1 bsl 50}),
            walk_memory => WalkMem,
            count => Count},
    %% The pid list is 2 words per process; leave room for the rest.
    Heap = min(?MAX_HEAP_WORDS, 3 * (Count + 1000)),
    Run = fun() -> run(Cfg) end,
    case A:run_bounded(Run, TimeoutMs + 1000, [{min_heap_size, Heap}, {priority, low}]) of
        {ok, Result} -> Result;
        {error, _} = E -> E
    end.

run(#{max := Max, chunk := Chunk, timeout := TimeoutMs, count := Count} = Cfg) ->
    T0 = erlang:monotonic_time(),
    Deadline = T0 + erlang:convert_time_unit(TimeoutMs, millisecond, native),
    Pids = erlang:processes(),
    Total = length(Pids),
    Len = min(Total, Max),
    Capped = case Total > Max of
                 true -> max_processes;
                 false -> none
             end,
    Chunked = Chunk > 0 andalso Len > Chunk andalso beamside_sysmon:chunks_available(),
    {Result, Info} =
        case Chunked of
            false ->
                R = walk_list(Pids, Len, Deadline, Cfg),
                {R, #{chunks => 1, chunk => 0, covered => maps:get(walked, R),
                      oldest_ms => 0, partial => false}};
            true ->
                K = (Len + Chunk - 1) div Chunk,
                Size = (Len + K - 1) div K,         % balanced: K chunks of <= Chunk
                I = beamside_sysmon:next_chunk(K),
                Start = min(I * Size, Len),
                R = walk_list(lists:nthtail(Start, Pids), min(Size, Len - Start), Deadline, Cfg),
                beamside_sysmon:store_chunk(I, R),
                Fresh = [{Age, Raw} || {_, Age, Raw} <- beamside_sysmon:chunks(K),
                                       Age =< maps:get(max_age, Cfg)],
                Merged = merge([Raw || {_, Raw} <- Fresh], maps:get(top_n, Cfg)),
                {Merged#{stop => maps:get(stop, R), walked => maps:get(walked, R),
                         vanished => maps:get(vanished, R)},
                 #{chunks => K, chunk => I, covered => maps:get(walked, Merged),
                   oldest_ms => lists:max([0 | [Age || {Age, _} <- Fresh]]),
                   partial => length(Fresh) < K}}
        end,
    %% Reaching Len (the cap or the end of the chunk) is not a truncation in
    %% itself: only a time-out or the max_processes cap are.
    Stop = case maps:get(stop, Result) of
               time -> time;
               _ -> Capped
           end,
    Elapsed = erlang:convert_time_unit(erlang:monotonic_time() - T0, native, microsecond),
    Described = maps:fold(fun(top_mq, Top, Acc) ->
                                  Acc#{top_message_queue => describe(Top, message_queue_len)};
                             (top_mem, Top, Acc) ->
                                  Acc#{top_memory => describe(Top, memory)};
                             (stop, _, Acc) ->
                                  Acc;
                             (K2, V, Acc) ->
                                  Acc#{K2 => V}
                          end, #{}, Result),
    maps:merge(Described, Info#{process_count => Count,
                                mq_threshold => maps:get(mq_threshold, Cfg),
                                truncated => Stop =/= none,
                                truncated_by => Stop,
                                duration_us => Elapsed}).

%% Walk at most Len processes of Pids; the raw (mergeable) result.
walk_list(Pids, Len, Deadline, #{mq_threshold := MqThr, top_n := TopN,
                                  memory_threshold := MemThr, walk_memory := WalkMem}) ->
    case WalkMem of
        false ->
            {S, Left, V, Sum, MaxQ, Above, NonZero, Top} =
                mq(Pids, Len, ?CHECK_EVERY, Deadline, MqThr, TopN, 0, 0, 0, 0, 0, top_new()),
            #{stop => S, walked => Len - Left, vanished => V,
              mq_sum => Sum, mq_max => MaxQ, mq_above => Above, mq_nonzero => NonZero,
              top_mq => top_list(Top)};
        true ->
            {S, Left, V, {Sum, MaxQ, Above, NonZero, Top}, {MSum, MMax, MAbove, MTop}} =
                mqmem(Pids, Len, ?CHECK_EVERY, Deadline, {MqThr, MemThr, TopN},
                      0, {0, 0, 0, 0, top_new()}, {0, 0, 0, top_new()}),
            #{stop => S, walked => Len - Left, vanished => V,
              mq_sum => Sum, mq_max => MaxQ, mq_above => Above, mq_nonzero => NonZero,
              top_mq => top_list(Top),
              memory_sum => MSum, memory_max => MMax, memory_above => MAbove,
              memory_threshold => MemThr, top_mem => top_list(MTop)}
    end.

%% The aggregate of the latest result of every chunk.
merge(Raws, TopN) ->
    Sum = fun(K) -> lists:sum([maps:get(K, R, 0) || R <- Raws]) end,
    Top = lists:sublist(
            lists:reverse(lists:keysort(1, dedup(lists:append([maps:get(top_mq, R, [])
                                                               || R <- Raws])))),
            TopN),
    #{walked => Sum(walked),
      vanished => Sum(vanished),
      mq_sum => Sum(mq_sum),
      mq_max => lists:max([0 | [maps:get(mq_max, R, 0) || R <- Raws]]),
      mq_above => Sum(mq_above),
      mq_nonzero => Sum(mq_nonzero),
      top_mq => Top}.

%% One entry per pid (a pid can be in two chunks as the table moves).
dedup(Entries) ->
    maps:fold(fun(P, V, Acc) -> [{V, P} | Acc] end, [],
              lists:foldl(fun({V, P}, M) -> maps:update_with(P, fun(X) -> max(X, V) end, V, M)
                          end, #{}, Entries)).

%% The plain walk: message queue lengths only.  Arguments rather than a
%% record, so that the loop allocates nothing per process.
mq([], Left, _, _, _, _, V, Sum, Max, Above, NZ, Top) ->
    {none, Left, V, Sum, Max, Above, NZ, Top};
mq(_, 0, _, _, _, _, V, Sum, Max, Above, NZ, Top) ->
    {max_processes, 0, V, Sum, Max, Above, NZ, Top};
mq(Ps, Left, 0, Deadline, Thr, TopN, V, Sum, Max, Above, NZ, Top) ->
    case erlang:monotonic_time() > Deadline of
        true -> {time, Left, V, Sum, Max, Above, NZ, Top};
        false -> mq(Ps, Left, ?CHECK_EVERY, Deadline, Thr, TopN, V, Sum, Max, Above, NZ, Top)
    end;
mq([P | Ps], Left, Check, Deadline, Thr, TopN, V, Sum, Max, Above, NZ, Top) ->
    case erlang:process_info(P, message_queue_len) of
        {message_queue_len, 0} ->
            mq(Ps, Left - 1, Check - 1, Deadline, Thr, TopN, V, Sum, Max, Above, NZ, Top);
        {message_queue_len, N} ->
            mq(Ps, Left - 1, Check - 1, Deadline, Thr, TopN, V, Sum + N, max(N, Max),
               if N > Thr -> Above + 1; true -> Above end, NZ + 1, top_add(N, P, Top, TopN));
        undefined ->
            mq(Ps, Left - 1, Check - 1, Deadline, Thr, TopN, V + 1, Sum, Max, Above, NZ, Top)
    end.

%% The walk with memory as well (walk_memory => true).
mqmem([], Left, _, _, _, V, Q, M) ->
    {none, Left, V, Q, M};
mqmem(_, 0, _, _, _, V, Q, M) ->
    {max_processes, 0, V, Q, M};
mqmem(Ps, Left, 0, Deadline, Cfg, V, Q, M) ->
    case erlang:monotonic_time() > Deadline of
        true -> {time, Left, V, Q, M};
        false -> mqmem(Ps, Left, ?CHECK_EVERY, Deadline, Cfg, V, Q, M)
    end;
mqmem([P | Ps], Left, Check, Deadline, {Thr, MThr, TopN} = Cfg, V, Q, M) ->
    case erlang:process_info(P, [message_queue_len, memory]) of
        [{message_queue_len, N}, {memory, Mem}] ->
            {Sum, Max, Above, NZ, Top} = Q,
            Q1 = case N of
                     0 -> Q;
                     _ -> {Sum + N, max(N, Max), if N > Thr -> Above + 1; true -> Above end,
                           NZ + 1, top_add(N, P, Top, TopN)}
                 end,
            {MSum, MMax, MAbove, MTop} = M,
            M1 = {MSum + Mem, max(Mem, MMax), if Mem > MThr -> MAbove + 1; true -> MAbove end,
                  top_add(Mem, P, MTop, TopN)},
            mqmem(Ps, Left - 1, Check - 1, Deadline, Cfg, V, Q1, M1);
        undefined ->
            mqmem(Ps, Left - 1, Check - 1, Deadline, Cfg, V + 1, Q, M)
    end.

%%% ---------------------------------------------------------------------------
%%% top-N: {Size, Min, [{Value, Pid}] ascending}

top_new() -> {0, 0, []}.

top_add(_, _, Top, 0) ->
    Top;
top_add(V, P, {Size, _, L}, TopN) when Size < TopN ->
    L1 = lists:sort([{V, P} | L]),
    {Size + 1, element(1, hd(L1)), L1};
top_add(V, P, {Size, Min, [_ | L]}, _) when V > Min ->
    L1 = lists:sort([{V, P} | L]),
    {Size, element(1, hd(L1)), L1};
top_add(_, _, Top, _) ->
    Top.

%% Largest first.
top_list({_, _, L}) -> lists:reverse(L).

describe(Top, Key) ->
    [describe(P, Key, V) || {V, P} <- Top].

describe(Pid, Key, V) ->
    A = beamside_agent,
    Items = [registered_name, current_function, initial_call, message_queue_len, memory],
    case erlang:process_info(Pid, Items) of
        [{registered_name, Name}, {current_function, CF}, {initial_call, IC},
         {message_queue_len, Len}, {memory, Mem}] ->
            #{pid => A:pid_bin(Pid),
              name => case Name of
                          [] -> <<>>;
                          _ -> atom_to_binary(Name, utf8)
                      end,
              current_function => A:mfa_bin(CF),
              initial_call => A:mfa_bin(IC),
              message_queue_len => Len,
              memory => Mem};
        _ ->
            Gone = #{pid => A:pid_bin(Pid), name => <<>>, current_function => <<>>,
                     initial_call => <<>>, message_queue_len => 0, memory => 0, exited => true},
            Gone#{Key => V}
    end.
