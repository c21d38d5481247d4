%%% ===========================================================================
%%% beamside_procs -- the bounded process walk: message queues and memory.
%%% ===========================================================================
%%%
%%% walk(Opts) -> map() | {error, Reason}
%%%   Asks processes for their message_queue_len -- one single-item
%%%   process_info BIF each, the cheapest way to read it (about 0.16 us) --
%%%   and, for the processes of the current memory slice (below), for
%%%   message_queue_len and memory in the same process_info/2 call (still one
%%%   BIF call per process).  It runs in a fresh low-priority process whose
%%%   heap is sized up front for the pid list.  Processes that exit during the
%%%   walk answer `undefined' and are counted in `vanished'; nothing else is
%%%   asked of them.
%%%
%%%   Why memory is only asked of a slice: `memory' (like total_heap_size)
%%%   cannot be read from outside the process: the VM sends the process a
%%%   request signal and the process answers when it is next scheduled.
%%%   Measured on a 2-core VM, OTP 25, 100,000 idle processes, that is about
%%%   1.5 us of node CPU per process against 0.16 us for message_queue_len
%%%   alone: asking every process of a 33,000-process chunk for its memory
%%%   at every collect would cost about 50 ms, twice the whole budget
%%%   (SPEC: 0.2 % of a scheduler at 15 s = 30 ms per collect).
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
%%%   Memory slices.  Within the range a call walks (its chunk, or the whole
%%%   table), the processes of one slice of at most memory_chunk (2500)
%%%   processes are also asked for their memory: slice j of L =
%%%   ceil(range / memory_chunk) equal slices, the next one at every visit of
%%%   the chunk (when attached; when not attached a slice picked from the
%%%   clock).  The memory figures are the aggregate of the latest result of
%%%   every slice (kept like the chunks, walk_max_age_ms): memory_covered
%%%   processes, memory_oldest_ms, memory_partial.  So every process's memory
%%%   is read every ceil(N / memory_chunk) calls or so: 42 calls (10.5 min
%%%   at 15 s) with 100,000 processes, 8 calls (2 min) with 20,000, every
%%%   call up to 2,500.  The top_memory processes found are read again at
%%%   every call, so a known large process's figure is always current.
%%%   memory_chunk => 0 asks every process walked for its memory (what
%%%   recon:proc_count(memory, N) does; about 7 times the cost of the walk);
%%%   walk_memory => true does that over the whole table in one call.
%%%
%%%   Limits (all mandatory, all options of collect/1):
%%%     max_processes    at most this many processes (the first ones of the
%%%                      table) are ever looked at (200000);
%%%     walk_chunk       at most this many per call when attached (50000);
%%%     memory_chunk     at most this many of them asked for memory (2500;
%%%                      0 = all, else at least 1000);
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
%%%   short binaries; the figures are read again when described);
%%%   max_memory (bytes: the largest of top_memory, whose figures are read
%%%   again when described; the slices' maximum when top_n is 0), top_memory
%%%   (same entries, largest first), memory_above (processes > memory_threshold bytes,
%%%   104857600), memory_threshold, memory_covered, memory_slices (L x K),
%%%   memory_oldest_ms, memory_partial.  With walk_memory => true also
%%%   memory_sum (bytes, over every process).
%%%
%%%   Cost (2-core VM, OTP 25, 100,000 idle processes): building the pid
%%%   list about 4 ms, then about 0.16 us per process looked at plus about
%%%   1.5 us per process of the memory slice: with the defaults a call walks
%%%   a third of the table and reads the memory of 2,400 processes, about
%%%   14 ms (10 ms without the slice, 54 ms with memory_chunk => 0).  About
%%%   3 words of transient heap per process.
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
            memory_chunk => case WalkMem of
                                true -> 0;
                                false -> memory_chunk(A:int_opt(memory_chunk, Opts, 2500,
                                                                {0, 134217727}))
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
    Caller = self(),
    Run = fun() -> run(Cfg#{caller => Caller}) end,
    case A:run_bounded(Run, TimeoutMs + 1000, [{min_heap_size, Heap}, {priority, low}]) of
        {ok, Result} -> Result;
        {error, _} = E -> E
    end.

%% 0 (every process walked) or at least 1000: a slice result is kept per
%% slice, so there are at most max_processes / 1000 of them.
memory_chunk(0) -> 0;
memory_chunk(N) -> max(N, 1000).

run(#{max := Max, chunk := Chunk, timeout := TimeoutMs, count := Count, top_n := TopN} = Cfg) ->
    T0 = erlang:monotonic_time(),
    Deadline = T0 + erlang:convert_time_unit(TimeoutMs, millisecond, native),
    Pids = erlang:processes(),
    Total = length(Pids),
    Len = min(Total, Max),
    Capped = case Total > Max of
                 true -> max_processes;
                 false -> none
             end,
    Attached = beamside_sysmon:chunks_available(),
    Chunked = Chunk > 0 andalso Len > Chunk andalso Attached,
    %% The range this call walks: chunk I of K.
    {K, I, Start, Nominal, Size} =
        case Chunked of
            false ->
                {1, 0, 0, Len, Len};
            true ->
                K0 = (Len + Chunk - 1) div Chunk,
                Size0 = (Len + K0 - 1) div K0,      % balanced: K chunks of <= Chunk
                I0 = beamside_sysmon:next_chunk(K0),
                Start0 = min(I0 * Size0, Len),
                {K0, I0, Start0, Size0, min(Size0, Len - Start0)}
        end,
    %% The memory slice within it: slice J of L (L from the nominal chunk
    %% size, the same for every chunk; the last one may be shorter).
    {L, J, MOff, MLen} = slice(I, Nominal, Size, Attached, Cfg),
    R = walk_range(lists:nthtail(Start, Pids), Size, MOff, MLen, Deadline, Cfg),
    Mem = maps:get(mem, R),
    {Result, Info} =
        case Chunked of
            false ->
                {R, #{chunks => 1, chunk => 0, covered => maps:get(walked, R),
                      oldest_ms => 0, partial => false}};
            true ->
                beamside_sysmon:store_chunk(I, maps:remove(mem, R)),
                Fresh = [{Age, Raw} || {_, Age, Raw} <- beamside_sysmon:chunks(K),
                                       Age =< maps:get(max_age, Cfg)],
                Merged = merge([Raw || {_, Raw} <- Fresh], TopN),
                {Merged#{stop => maps:get(stop, R), walked => maps:get(walked, R),
                         vanished => maps:get(vanished, R)},
                 #{chunks => K, chunk => I, covered => maps:get(walked, Merged),
                   oldest_ms => lists:max([0 | [Age || {Age, _} <- Fresh]]),
                   partial => length(Fresh) < K}}
        end,
    MemInfo = case Attached andalso (K > 1 orelse L > 1) of
                  true ->
                      beamside_sysmon:store_slice({K, L}, {I, J}, Mem),
                      FreshM = [{Age, M} || {Age, M} <- beamside_sysmon:slices(),
                                            Age =< maps:get(max_age, Cfg)],
                      memory_info(merge_mem([M || {_, M} <- FreshM], TopN),
                                  lists:max([0 | [Age || {Age, _} <- FreshM]]),
                                  length(FreshM) < K * L, K * L, Cfg);
                  false ->
                      memory_info(Mem, 0, L > 1, K * L, Cfg)
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
                             (stop, _, Acc) -> Acc;
                             (mem, _, Acc) -> Acc;
                             (K2, V, Acc) -> Acc#{K2 => V}
                          end, #{}, Result),
    maps:merge(maps:merge(Described, MemInfo),
               Info#{process_count => Count,
                     mq_threshold => maps:get(mq_threshold, Cfg),
                     truncated => Stop =/= none,
                     truncated_by => Stop,
                     duration_us => Elapsed}).

%% {L, J, Offset, Length} of the memory slice within chunk I (of Nominal
%% processes, Size in this call).
slice(_I, _Nominal, Size, _Attached, #{memory_chunk := 0}) ->
    {1, 0, 0, Size};
slice(_I, Nominal, Size, _Attached, #{memory_chunk := MC}) when Nominal =< MC ->
    {1, 0, 0, Size};
slice(I, Nominal, Size, Attached, #{memory_chunk := MC}) ->
    L = (Nominal + MC - 1) div MC,
    MSize = (Nominal + L - 1) div L,
    J = case Attached of
            true -> beamside_sysmon:next_slice(I, L);
            false -> erlang:phash2(erlang:monotonic_time(), L)
        end,
    Off = min(J * MSize, Size),
    {L, J, Off, min(MSize, Size - Off)}.

memory_info(#{walked := W, max := Max0, above := Above, top := Top} = M, Oldest, Partial,
            Slices, #{memory_threshold := Thr, walk_memory := WalkMem}) ->
    %% The top processes are described now, with their current memory: the
    %% largest of them is max_memory (the slices' own maximum may be older).
    Described = lists:reverse(lists:sort(fun(#{memory := X}, #{memory := Y}) -> X =< Y end,
                                         describe(Top, memory))),
    Max = case Described of
              [#{memory := Biggest} | _] -> Biggest;
              [] -> Max0
          end,
    Base = #{max_memory => Max,
             top_memory => Described,
             memory_above => Above,
             memory_threshold => Thr,
             memory_covered => W,
             memory_slices => Slices,
             memory_oldest_ms => Oldest,
             memory_partial => Partial},
    case WalkMem of
        true -> Base#{memory_sum => maps:get(sum, M)};
        false -> Base
    end.

%% Walk Len processes of Pids, asking those at positions [MOff, MOff + MLen)
%% for their memory too; the raw (mergeable) result.
walk_range(Pids, Len, MOff, MLen, Deadline,
           #{mq_threshold := Thr, top_n := TopN, memory_threshold := MThr, caller := Caller}) ->
    Q0 = {0, 0, 0, 0, 0, top_new()},            % vanished, sum, max, above, nonzero, top
    M0 = {0, 0, 0, 0, top_new()},               % walked, sum, max, above, top
    {S1, Ps1, W1, Q1} = mq_seg(Pids, MOff, Deadline, Thr, TopN, Q0),
    {S2, Ps2, W2, Q2, M2} =
        case S1 of
            done -> mqmem(Ps1, MLen, ?CHECK_EVERY, Deadline, {Thr, MThr, TopN, [self(), Caller]},
                          Q1, M0);
            _ -> {S1, Ps1, 0, Q1, M0}
        end,
    {S3, W3, Q3} =
        case S2 of
            done ->
                {S, _, W, Q} = mq_seg(Ps2, Len - MOff - MLen, Deadline, Thr, TopN, Q2),
                {S, W, Q};
            _ ->
                {S2, 0, Q2}
        end,
    {V, Sum, Max, Above, NZ, Top} = Q3,
    {MW, MSum, MMax, MAbove, MTop} = M2,
    #{stop => case S3 of done -> none; Other -> Other end,
      walked => W1 + W2 + W3, vanished => V,
      mq_sum => Sum, mq_max => Max, mq_above => Above, mq_nonzero => NZ,
      top_mq => top_list(Top),
      mem => #{walked => MW, sum => MSum, max => MMax, above => MAbove,
               top => top_list(MTop)}}.

%% N processes of the plain walk: {done | none | time, RestOfPids, Walked, Q}.
mq_seg(Pids, N, Deadline, Thr, TopN, {V, Sum, Max, Above, NZ, Top}) ->
    {S, Ps, Left, V1, Sum1, Max1, Above1, NZ1, Top1} =
        mq(Pids, N, ?CHECK_EVERY, Deadline, Thr, TopN, V, Sum, Max, Above, NZ, Top),
    {S, Ps, N - Left, {V1, Sum1, Max1, Above1, NZ1, Top1}}.

%% The aggregate of the latest result of every chunk.
merge(Raws, TopN) ->
    Sum = fun(K) -> lists:sum([maps:get(K, R, 0) || R <- Raws]) end,
    #{walked => Sum(walked),
      vanished => Sum(vanished),
      mq_sum => Sum(mq_sum),
      mq_max => lists:max([0 | [maps:get(mq_max, R, 0) || R <- Raws]]),
      mq_above => Sum(mq_above),
      mq_nonzero => Sum(mq_nonzero),
      top_mq => merge_top([maps:get(top_mq, R, []) || R <- Raws], TopN)}.

%% The aggregate of the latest result of every memory slice.
merge_mem(Raws, TopN) ->
    Sum = fun(K) -> lists:sum([maps:get(K, R, 0) || R <- Raws]) end,
    #{walked => Sum(walked),
      sum => Sum(sum),
      max => lists:max([0 | [maps:get(max, R, 0) || R <- Raws]]),
      above => Sum(above),
      top => merge_top([maps:get(top, R, []) || R <- Raws], TopN)}.

merge_top(Tops, TopN) ->
    lists:sublist(lists:reverse(lists:keysort(1, dedup(lists:append(Tops)))), TopN).

%% One entry per pid (a pid can be in two chunks as the table moves).
dedup(Entries) ->
    maps:fold(fun(P, V, Acc) -> [{V, P} | Acc] end, [],
              lists:foldl(fun({V, P}, M) -> maps:update_with(P, fun(X) -> max(X, V) end, V, M)
                          end, #{}, Entries)).

%% The plain walk: message queue lengths only.  Arguments rather than a
%% record, so that the loop allocates nothing per process.  Stops with
%% `done' when Left reaches 0, `none' at the end of the list, `time'.
mq([], Left, _, _, _, _, V, Sum, Max, Above, NZ, Top) ->
    {none, [], Left, V, Sum, Max, Above, NZ, Top};
mq(Ps, 0, _, _, _, _, V, Sum, Max, Above, NZ, Top) ->
    {done, Ps, 0, V, Sum, Max, Above, NZ, Top};
mq(Ps, Left, 0, Deadline, Thr, TopN, V, Sum, Max, Above, NZ, Top) ->
    case erlang:monotonic_time() > Deadline of
        true -> {time, Ps, Left, V, Sum, Max, Above, NZ, Top};
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

%% The walk with memory as well: one process_info/2 call per process.
%% {Stop, RestOfPids, Walked, Q, M}.
mqmem(Ps, Left, Check, Deadline, Cfg, Q, M) ->
    mqmem(Ps, Left, Left, Check, Deadline, Cfg, Q, M).

mqmem([], N, Left, _, _, _, Q, M) ->
    {none, [], N - Left, Q, M};
mqmem(Ps, N, 0, _, _, _, Q, M) ->
    {done, Ps, N, Q, M};
mqmem(Ps, N, Left, 0, Deadline, Cfg, Q, M) ->
    case erlang:monotonic_time() > Deadline of
        true -> {time, Ps, N - Left, Q, M};
        false -> mqmem(Ps, N, Left, ?CHECK_EVERY, Deadline, Cfg, Q, M)
    end;
mqmem([P | Ps], N, Left, Check, Deadline, {Thr, MThr, TopN, Ours} = Cfg, Q, M) ->
    Info = case lists:member(P, Ours) of
               false -> erlang:process_info(P, [message_queue_len, memory]);
               true -> ours                     % the walker and its caller
           end,
    case Info of
        ours ->
            M1 = setelement(1, M, element(1, M) + 1),
            mqmem(Ps, N, Left - 1, Check - 1, Deadline, Cfg, Q, M1);
        [{message_queue_len, Len}, {memory, Mem}] ->
            {V, Sum, Max, Above, NZ, Top} = Q,
            Q1 = case Len of
                     0 -> Q;
                     _ -> {V, Sum + Len, max(Len, Max),
                           if Len > Thr -> Above + 1; true -> Above end,
                           NZ + 1, top_add(Len, P, Top, TopN)}
                 end,
            {MW, MSum, MMax, MAbove, MTop} = M,
            M1 = {MW + 1, MSum + Mem, max(Mem, MMax),
                  if Mem > MThr -> MAbove + 1; true -> MAbove end,
                  top_add(Mem, P, MTop, TopN)},
            mqmem(Ps, N, Left - 1, Check - 1, Deadline, Cfg, Q1, M1);
        undefined ->
            {V, Sum, Max, Above, NZ, Top} = Q,
            mqmem(Ps, N, Left - 1, Check - 1, Deadline, Cfg, {V + 1, Sum, Max, Above, NZ, Top}, M)
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
