%%% ===========================================================================
%%% beamside_ops_trace -- tracing calls and messages, always bounded.
%%% ===========================================================================
%%%
%%% start/2 spawns one tracer process for one trace and answers once it has
%%% set its flags and patterns; the sidecar then drains the tracer's buffer
%%% with poll/2 (an rpc every few hundred ms) until the trace ends, and may
%%% end it with stop/1.  The tracer never sends anything over distribution
%%% itself: what the sidecar has not polled yet waits in a bounded buffer,
%%% and a full buffer stops the trace (reason backlog) instead of queueing.
%%%
%%% Spec (a map):
%%%   calls:    #{type => calls, module => Bin, function => Bin | <<>> (any),
%%%               arity => N | -1 (any), match_spec => Bin | <<>>,
%%%               return_trace => boolean()}
%%%     match_spec is the text of a literal match spec term
%%%     ("[{['$1','_'], [{'>', '$1', 10}], []}]"), checked with
%%%     erlang:match_spec_test/3; the default matches every call.
%%%     return_trace adds {return_trace} to every clause (recon_trace's
%%%     shorthand).  Parsing the text may create the atoms it names (an
%%%     operator's request, at most 4096 bytes); the module and function
%%%     are looked up with binary_to_existing_atom.  Calls are traced in
%%%     every process (local calls too, as recon_trace does).
%%%   messages: #{type => messages, process => Bin (a pid or a registered
%%%               name), send => boolean(), 'receive' => boolean()}
%%%
%%% Opts (a map; every limit is mandatory in effect: absent means its
%%% default, out of range is clamped):
%%%   count       events in all, then stop (100, 1..100000)
%%%   rate        {N, Ms}: more than N events within Ms ms stops the trace
%%%               (recon_trace's rate; {100, 1000}; N 1..100000, Ms
%%%               10..60000)
%%%   duration_ms the trace stops after it (60000, 100..3600000)
%%%   max_queue   the tracer's mailbox length beyond which it stops (5000,
%%%               10..100000): trace messages arriving faster than it can
%%%               even count them
%%%   buffer      events kept for poll/2 before the trace stops with
%%%               backlog (2000, 10..10000); buffer_bytes (4 MiB)
%%%   idle_ms     with no poll for this long the caller is gone: stop
%%%               (10000, 1000..60000)
%%%   chars       each event's text: io_lib's chars_limit and a byte cut
%%%               (1024, 64..8192); depth (20)
%%%
%%% Stop reasons: count, rate, duration, mailbox, backlog, dist_busy (at a
%%% poll, the connection to the sidecar has dist_buf_busy_limit bytes
%%% queued: the buffer is dropped rather than added to it), caller (stop/1),
%%% caller_gone (idle_ms without a poll), sidecar_down (the node of the
%%% rpc's group leader, the sidecar, disconnected: SIGKILL included),
%%% detached (beamside_sysmon, which every attach runs, ended: a detach, or
%%% the last sidecar gone; the tracer ends before the modules are removed,
%%% and start refuses to run without it).
%%% On stop the tracer removes what it set and only that: the trace
%%% pattern on the traced functions (a `local' one: local and remote calls)
%%% and its flags on the processes it traces (one walk of the processes at stop: the flags of the
%%% processes other tracers trace are left alone).  The BEAM gives each
%%% process one tracer: start fails (precondition) when the process to
%%% trace already has one, and a call trace covers `all' processes except
%%% those another tracer traces already (their calls are not in the trace).
%%% The trace pattern is per function: another tool's pattern on the same
%%% function is replaced, and removed at the end; so is the node's one
%%% setting for the processes spawned later (erlang:trace(new, ...)).
%%% A tracer killed from outside (exit(Pid, kill)) cannot clean up: the VM
%%% drops the flags of its processes at their next event, but the pattern
%%% stays (erlang:trace_info({M, F, A}, traced)) until a trace of the same
%%% function ends.  Calls of another tool's pattern that reach the tracer
%%% through its flags are dropped (counted in discarded).  After stopping,
%%% the tracer discards the trace messages still in its mailbox and waits
%%% for the last poll (or idle_ms) before it exits.
%%%
%%% Cost: the tracer formats at most N events per Ms (a rate over N stops
%%% it) and holds at most buffer events and max_queue messages; a call the
%%% match spec rejects costs the VM its match spec run and never reaches
%%% the tracer (bench/bench_trace.py measures both).
%%%
%%% Each event is a map: time (ns since the epoch), pid (text), type (call,
%%% return_from, exception_from, send, receive), text: recon_trace's line,
%%% "HH:MM:SS.ffffff <0.80.0> m:f(Arg1, Arg2)", "... m:f/2 --> Value",
%%% "... > To: Msg", "... < Msg", bounded by chars.
%%% ===========================================================================
-module(beamside_ops_trace).

-export([start/2, poll/2, stop/1]).
%% spawned
-export([init/4]).

-define(MAX_MS_BYTES, 4096).
-define(START_MS, 5000).
-define(POLL_MS, 2000).

-record(st, {
          owner       :: node(),
          cleanup     :: fun(() -> ok),
          filter      :: fun((term()) -> boolean()),
          count       :: pos_integer(),
          rate_n      :: pos_integer(),
          rate_ms     :: pos_integer(),
          max_queue   :: pos_integer(),
          buffer_max  :: pos_integer(),
          bytes_max   :: pos_integer(),
          idle_ms     :: pos_integer(),
          text_opts   :: map(),
          total = 0   :: non_neg_integer(),
          window = 0  :: integer(),
          in_window = 0 :: non_neg_integer(),
          buf = []    :: [map()],  % newest first
          buf_len = 0 :: non_neg_integer(),
          buf_bytes = 0 :: non_neg_integer(),
          discarded = 0 :: non_neg_integer(),
          last_poll   :: integer(),
          stopped = running :: atom()
         }).

%%% ---------------------------------------------------------------------------
%%% API (rpc)

-spec start(map(), map()) -> beamside_ops:reply(map()).
start(Spec, Opts) when is_map(Spec), is_map(Opts) ->
    case compile(Spec) of
        {ok, Setup} ->
            Owner = node(group_leader()),
            Ref = make_ref(),
            Parent = self(),
            {Pid, MRef} = spawn_opt(?MODULE, init, [Parent, Ref, {Owner, Setup}, Opts],
                                    [monitor, {message_queue_data, off_heap},
                                     {priority, normal}]),
            receive
                {Ref, {ok, Info}} ->
                    erlang:demonitor(MRef, [flush]),
                    {ok, Info#{tracer => beamside_ops:pid_text(Pid)}};
                {Ref, {error, _} = E} ->
                    erlang:demonitor(MRef, [flush]),
                    E;
                {'DOWN', MRef, process, Pid, Why} ->
                    beamside_ops:internal(beamside_ops:text(Why, #{}))
            after ?START_MS ->
                    exit(Pid, kill),
                    erlang:demonitor(MRef, [flush]),
                    beamside_ops:timeout(<<"the tracer did not start in time">>)
            end;
        {error, _} = E ->
            E
    end;
start(_, _) ->
    beamside_ops:bad_opts().

%% Up to Max buffered events, oldest first, and the trace's state.
-spec poll(binary(), pos_integer()) -> beamside_ops:reply(map()).
poll(TracerText, Max) when is_binary(TracerText), is_integer(Max), Max > 0 ->
    case tracer(TracerText) of
        {ok, Pid} ->
            case ask(Pid, {poll, Max}) of
                {ok, _} = Ok -> Ok;
                gone -> {ok, #{events => [], state => gone, total => 0, discarded => 0}}
            end;
        error ->
            beamside_ops:invalid(<<"not a tracer pid">>)
    end;
poll(_, _) ->
    beamside_ops:bad_opts().

%% Stop the trace (reason caller, unless it had stopped already: that reason
%% is the reply) and end the tracer: what it still buffered is dropped.
-spec stop(binary()) -> beamside_ops:reply(atom()).
stop(TracerText) when is_binary(TracerText) ->
    case tracer(TracerText) of
        {ok, Pid} ->
            case ask(Pid, stop) of
                {ok, _} = Ok -> Ok;
                gone -> {ok, gone}
            end;
        error ->
            beamside_ops:invalid(<<"not a tracer pid">>)
    end;
stop(_) ->
    beamside_ops:bad_opts().

tracer(Text) ->
    try list_to_pid(binary_to_list(Text)) of
        Pid when node(Pid) =:= node() -> {ok, Pid};
        _ -> error
    catch error:badarg -> error
    end.

ask(Pid, What) ->
    MRef = erlang:monitor(process, Pid),
    Pid ! {'$beamside_trace', self(), MRef, What},
    receive
        {MRef, Reply} ->
            erlang:demonitor(MRef, [flush]),
            {ok, Reply};
        {'DOWN', MRef, process, Pid, _} ->
            gone
    after ?POLL_MS ->
            erlang:demonitor(MRef, [flush]),
            gone
    end.

%%% ---------------------------------------------------------------------------
%%% what to trace

compile(#{type := calls, module := MB, function := FB, arity := A} = Spec)
  when is_binary(MB), is_binary(FB), is_integer(A) ->
    case beamside_ops:existing_atom(MB) of
        {ok, M} ->
            F = case FB of
                    <<>> -> {ok, '_'};
                    _ -> beamside_ops:existing_atom(FB)
                end,
            case F of
                {ok, Fun} ->
                    Arity = if A < 0 -> '_'; true -> A end,
                    case match_spec(maps:get(match_spec, Spec, <<>>),
                                    maps:get(return_trace, Spec, false) =:= true) of
                        {ok, MS} -> {ok, {calls, {M, Fun, Arity}, MS}};
                        {error, _} = E -> E
                    end;
                error ->
                    beamside_ops:not_found(<<"no function ", FB/binary, " in ", MB/binary>>)
            end;
        error ->
            beamside_ops:not_found(<<"no module ", MB/binary, " is loaded">>)
    end;
compile(#{type := messages, process := P} = Spec) when is_binary(P) ->
    Flags = [send || maps:get(send, Spec, false) =:= true]
        ++ ['receive' || maps:get('receive', Spec, false) =:= true],
    case {Flags, process(P)} of
        {[], _} -> beamside_ops:invalid(<<"trace send, receive or both">>);
        {_, {ok, Pid}} -> {ok, {messages, Pid, Flags}};
        {_, {error, _} = E} -> E
    end;
compile(_) ->
    beamside_ops:invalid(<<"a trace of calls or of messages">>).

process(<<"<", _/binary>> = Text) ->
    try list_to_pid(binary_to_list(Text)) of
        Pid when node(Pid) =/= node() ->
            beamside_ops:invalid(<<"the pid ", Text/binary, " is on another node">>);
        Pid ->
            case is_process_alive(Pid) of
                true -> {ok, Pid};
                false -> beamside_ops:not_found(<<"no process ", Text/binary>>)
            end
    catch error:badarg -> beamside_ops:invalid(<<"not a pid: ", Text/binary>>)
    end;
process(Name) ->
    case beamside_ops:existing_atom(Name) of
        {ok, A} ->
            case whereis(A) of
                Pid when is_pid(Pid) -> {ok, Pid};
                _ -> beamside_ops:not_found(<<"no process is registered as ", Name/binary>>)
            end;
        error ->
            beamside_ops:not_found(<<"no process is registered as ", Name/binary>>)
    end.

match_spec(<<>>, Return) ->
    {ok, [{'_', [], [{return_trace} || Return]}]};
match_spec(Text, _) when byte_size(Text) > ?MAX_MS_BYTES ->
    beamside_ops:invalid(<<"match_spec is longer than 4096 bytes">>);
match_spec(Text, Return) ->
    case parse_term(Text) of
        {ok, MS} when is_list(MS) ->
            MS1 = case Return of
                      true -> [with_return(C) || C <- MS];
                      false -> MS
                  end,
            try erlang:match_spec_test([], MS1, trace) of
                {ok, _, _, _} -> {ok, MS1};
                {error, Errors} -> beamside_ops:invalid(ms_errors(Errors))
            catch error:_ ->
                    beamside_ops:invalid(<<"match_spec: not a match specification">>)
            end;
        {ok, _} ->
            beamside_ops:invalid(<<"match_spec: a list of {Head, Guards, Body} expected">>);
        {error, Why} ->
            beamside_ops:invalid(<<"match_spec: ", Why/binary>>)
    end.

with_return({Head, Guards, Body}) when is_list(Body) ->
    {Head, Guards, Body ++ [{return_trace}]};
with_return(Clause) ->
    Clause.

ms_errors(Errors) ->
    Texts = [beamside_ops:bin(S) || {_, S} <- Errors],
    iolist_to_binary(["match_spec: " | lists:join("; ", Texts)]).

parse_term(Text) ->
    case unicode:characters_to_list(Text) of
        Chars when is_list(Chars) ->
            case erl_scan:string(string:trim(Chars, trailing, ". \n\t") ++ ".") of
                {ok, Tokens, _} ->
                    case erl_parse:parse_term(Tokens) of
                        {ok, T} -> {ok, T};
                        {error, {_, Mod, Desc}} ->
                            {error, beamside_ops:bin(Mod:format_error(Desc))}
                    end;
                {error, {_, Mod, Desc}, _} ->
                    {error, beamside_ops:bin(Mod:format_error(Desc))}
            end;
        _ ->
            {error, <<"not UTF-8">>}
    end.

%%% ---------------------------------------------------------------------------
%%% the tracer

-spec init(pid(), reference(), {node(), tuple()}, map()) -> ok.
init(Parent, Ref, {Owner, Setup}, Opts) ->
    process_flag(trap_exit, true),
    put('$beamside_trace', true),  % how a look at the node tells our tracers
    Now = erlang:monotonic_time(millisecond),
    {RateN, RateMs} = case maps:get(rate, Opts, {100, 1000}) of
                          {N, Ms} when is_integer(N), is_integer(Ms) ->
                              {max(1, min(100000, N)), max(10, min(60000, Ms))};
                          _ -> {100, 1000}
                      end,
    St0 = #st{owner = Owner,
              cleanup = fun() -> ok end,
              filter = fun(_) -> true end,
              count = beamside_ops:int(count, Opts, 100, 1, 100000),
              rate_n = RateN, rate_ms = RateMs,
              max_queue = beamside_ops:int(max_queue, Opts, 5000, 10, 100000),
              buffer_max = beamside_ops:int(buffer, Opts, 2000, 10, 10000),
              bytes_max = beamside_ops:int(buffer_bytes, Opts, 4194304, 65536, 67108864),
              idle_ms = beamside_ops:int(idle_ms, Opts, 10000, 1000, 60000),
              text_opts = #{chars => beamside_ops:int(chars, Opts, 1024, 64, 8192),
                            depth => beamside_ops:int(depth, Opts, 20, 1, 100)},
              window = Now, last_poll = Now},
    monitor_node(Owner, true),
    case attached() andalso set(Setup) of
        {ok, Info, Cleanup, Filter} ->
            Duration = beamside_ops:int(duration_ms, Opts, 60000, 100, 3600000),
            erlang:send_after(Duration, self(), '$beamside_trace_duration'),
            erlang:send_after(St0#st.idle_ms, self(), '$beamside_trace_idle'),
            Parent ! {Ref, {ok, Info}},
            loop(St0#st{cleanup = Cleanup, filter = Filter});
        false ->
            Parent ! {Ref, beamside_ops:precondition(<<"beamside is not attached here">>)},
            ok;
        {error, _} = E ->
            Parent ! {Ref, E},
            ok
    end.

%% Tied to the agents as their other processes are: beamside_sysmon's end
%% (detach, the last sidecar gone) ends the trace before the modules go.
attached() ->
    case whereis(beamside_sysmon) of
        Pid when is_pid(Pid) ->
            _ = erlang:monitor(process, Pid, [{tag, '$beamside_trace_detached'}]),
            true;
        _ ->
            false
    end.

set({calls, {M, F, A} = MFA, MS}) ->
    Matched = erlang:trace_pattern(MFA, MS, [local]),
    if
        Matched =:= 0 ->
            erlang:trace_pattern(MFA, false, [local]),
            beamside_ops:not_found(iolist_to_binary(
                                     io_lib:format("no function matches ~p:~p/~p", [M, F, A])));
        true ->
            Flags = [call, timestamp],
            try erlang:trace(all, true, [{tracer, self()} | Flags])
            catch error:Why ->
                    erlang:trace_pattern(MFA, false, [local]),
                    erlang:error(Why)
            end,
            %% not ourselves: formatting an event may call the traced function
            erlang:trace(self(), false, Flags),
            Cleanup = fun() ->
                              %% our processes only: erlang:trace(all, false, ...)
                              %% would clear other tracers' call flags too (and
                              %% OTP 28 makes itself their tracer when given ours)
                              erlang:trace(new, false, Flags),
                              Me = self(),
                              _ = [catch erlang:trace(P, false, Flags)
                                   || P <- erlang:processes(),
                                      erlang:trace_info(P, tracer) =:= {tracer, Me}],
                              erlang:trace_pattern(MFA, false, [local]),
                              ok
                      end,
            %% other tools' patterns reach us too while our flags are set
            Filter = fun(Mod) -> match(Mod, M) end,
            {ok, #{matched => Matched}, Cleanup, Filter}
    end;
set({messages, Pid, Flags0}) ->
    case erlang:trace_info(Pid, tracer) of
        {tracer, []} ->
            Flags = [timestamp | Flags0],
            try erlang:trace(Pid, true, [{tracer, self()} | Flags]) of
                _ ->
                    Cleanup = fun() ->
                                      catch erlang:trace(Pid, false, Flags),
                                      ok
                              end,
                    {ok, #{matched => 1}, Cleanup, fun(_) -> true end}
            catch error:badarg ->
                    beamside_ops:not_found(<<"the process exited">>)
            end;
        {tracer, _} ->
            beamside_ops:precondition(<<"the process is traced already (one tracer per process)">>);
        undefined ->
            beamside_ops:not_found(<<"the process exited">>)
    end.

match(_, '_') -> true;
match(M, M) -> true;
match(_, _) -> false.

loop(St) ->
    receive
        Msg -> loop(handle(Msg, St))
    end.

handle(T, #st{stopped = running} = St) when element(1, T) =:= trace_ts ->
    event(T, St);
handle(T, St) when element(1, T) =:= trace_ts; element(1, T) =:= trace ->
    St#st{discarded = St#st.discarded + 1};
handle({'$beamside_trace', From, Ref, {poll, Max}}, St0) ->
    %% the reply goes over the sidecar's connection: not onto a busy one
    St = case dist_busy(St0#st.owner) of
             true -> (halt_trace(dist_busy, St0))#st{buf = [], buf_len = 0, buf_bytes = 0};
             false -> St0
         end,
    {Events, Rest} = take(Max, lists:reverse(St#st.buf)),
    Bytes = lists:sum([byte_size(maps:get(text, E)) || E <- Events]),
    St1 = St#st{buf = lists:reverse(Rest), buf_len = St#st.buf_len - length(Events),
                buf_bytes = St#st.buf_bytes - Bytes,
                last_poll = erlang:monotonic_time(millisecond)},
    From ! {Ref, #{events => Events, state => St1#st.stopped, total => St1#st.total,
                   discarded => St1#st.discarded}},
    case {St1#st.stopped, Rest} of
        {running, _} -> St1;
        {_, []} -> exit(normal);
        _ -> St1
    end;
handle({'$beamside_trace', From, Ref, stop}, St) ->
    St1 = halt_trace(caller, St),
    From ! {Ref, St1#st.stopped},
    exit(normal);
handle('$beamside_trace_duration', St) ->
    halt_trace(duration, St);
handle('$beamside_trace_idle', #st{idle_ms = Idle, last_poll = Last} = St) ->
    Since = erlang:monotonic_time(millisecond) - Last,
    if
        Since >= Idle ->
            halt_trace(caller_gone, St),
            exit(normal);
        true ->
            erlang:send_after(Idle - Since, self(), '$beamside_trace_idle'),
            St
    end;
handle({nodedown, Owner}, #st{owner = Owner} = St) ->
    halt_trace(sidecar_down, St),
    exit(normal);
handle({'$beamside_trace_detached', _, process, _, _}, St) ->
    halt_trace(detached, St),
    exit(normal);
handle({'EXIT', _, _}, St) ->
    St;
handle(_, St) ->
    St.

%% One trace message while running: the limits first, then into the buffer.
event(T, #st{total = Total, count = Count} = St) ->
    Now = erlang:monotonic_time(millisecond),
    St1 = case Now - St#st.window >= St#st.rate_ms of
              true -> St#st{window = Now, in_window = 1};
              false -> St#st{in_window = St#st.in_window + 1}
          end,
    case wanted(T, St) of
        false ->
            %% another tool's pattern firing in our processes: dropped, and
            %% the mailbox still looked at now and then
            Foreign = St#st{discarded = St#st.discarded + 1},
            case Foreign#st.discarded band 1023 of
                0 -> over_queue(Foreign);
                _ -> Foreign
            end;
        true when St1#st.in_window > St1#st.rate_n ->
            halt_trace(rate, St1);
        true ->
            case erlang:process_info(self(), message_queue_len) of
                {message_queue_len, Q} when Q > St#st.max_queue ->
                    halt_trace(mailbox, St1);
                _ when St1#st.buf_len >= St1#st.buffer_max;
                       St1#st.buf_bytes >= St1#st.bytes_max ->
                    halt_trace(backlog, St1);
                _ ->
                    E = format(T, St#st.text_opts),
                    St2 = St1#st{total = Total + 1,
                                 buf = [E | St1#st.buf],
                                 buf_len = St1#st.buf_len + 1,
                                 buf_bytes = St1#st.buf_bytes + byte_size(maps:get(text, E))},
                    case Total + 1 >= Count of
                        true -> halt_trace(count, St2);
                        false -> St2
                    end
            end
    end.

wanted({trace_ts, _, Type, {M, _, _}, _}, #st{filter = F}) when Type =:= call ->
    F(M);
wanted({trace_ts, _, Type, {M, _, _}, _, _}, #st{filter = F})
  when Type =:= call; Type =:= return_from; Type =:= exception_from ->
    F(M);
wanted(_, _) ->
    true.

%% The connection to the sidecar has a dist_buf_busy_limit of output queued
%% (a TCP controller port's queue; a TLS one's mailbox, as messages).
dist_busy(Owner) ->
    Limit = erlang:system_info(dist_buf_busy_limit),
    case lists:keyfind(Owner, 1, erlang:system_info(dist_ctrl)) of
        {_, Port} when is_port(Port) ->
            case erlang:port_info(Port, queue_size) of
                {queue_size, Q} -> Q >= Limit;
                _ -> false
            end;
        {_, Pid} when is_pid(Pid) ->
            case erlang:process_info(Pid, message_queue_len) of
                {message_queue_len, Q} -> Q >= Limit div 1024;
                _ -> false
            end;
        _ ->
            false
    end.

over_queue(St) ->
    case erlang:process_info(self(), message_queue_len) of
        {message_queue_len, Q} when Q > St#st.max_queue -> halt_trace(mailbox, St);
        _ -> St
    end.

%% Remove our flags and patterns (once), and drop what is still queued.
halt_trace(_Reason, #st{stopped = S} = St) when S =/= running ->
    St;
halt_trace(Reason, #st{cleanup = Cleanup} = St) ->
    Cleanup(),
    St#st{stopped = Reason, discarded = St#st.discarded + flush(0)}.

flush(N) ->
    receive
        T when element(1, T) =:= trace_ts -> flush(N + 1)
    after 0 -> N
    end.

take(Max, List) when length(List) =< Max -> {List, []};
take(Max, List) -> lists:split(Max, List).

%%% ---------------------------------------------------------------------------
%%% recon_trace's lines

format(T, Opts) ->
    {Pid, Type, Line, TS} =
        case T of
            {trace_ts, P, call, {M, F, Args}, TS0} ->
                {P, call, [atom(M), $:, atom(F), args(Args, Opts)], TS0};
            {trace_ts, P, call, {M, F, Args}, Extra, TS0} ->
                {P, call, [atom(M), $:, atom(F), args(Args, Opts), $\s, term(Extra, Opts)], TS0};
            {trace_ts, P, return_from, {M, F, A}, Ret, TS0} ->
                {P, return_from, [atom(M), $:, atom(F), $/, integer_to_list(A), " --> ",
                                  term(Ret, Opts)], TS0};
            {trace_ts, P, exception_from, {M, F, A}, {C, R}, TS0} ->
                {P, exception_from, [atom(M), $:, atom(F), $/, integer_to_list(A), $\s,
                                     atom(C), $\s, term(R, Opts)], TS0};
            {trace_ts, P, send, Msg, To, TS0} ->
                {P, send, ["> ", term(To, Opts), ": ", term(Msg, Opts)], TS0};
            {trace_ts, P, send_to_non_existing_process, Msg, To, TS0} ->
                {P, send, ["> (non_existent) ", term(To, Opts), ": ", term(Msg, Opts)], TS0};
            {trace_ts, P, 'receive', Msg, TS0} ->
                {P, 'receive', ["< ", term(Msg, Opts)], TS0};
            _ ->
                {element(2, T), other, term(T, Opts), element(tuple_size(T), T)}
        end,
    Ns = ns(TS),
    {_, {H, Mi, S}} = calendar:system_time_to_universal_time(Ns div 1000000000, second),
    Micro = (Ns div 1000) rem 1000000,
    Head = io_lib:format("~2..0b:~2..0b:~2..0b.~6..0b ~s ", [H, Mi, S, Micro, pid(Pid)]),
    Chars = maps:get(chars, Opts),
    Text = beamside_ops:truncate(unicode:characters_to_binary([Head | Line]), Chars + 64),
    #{time => Ns, pid => pid(Pid), type => Type, text => Text}.

ns({Mega, Sec, Micro}) -> ((Mega * 1000000 + Sec) * 1000000 + Micro) * 1000;
ns(_) -> erlang:system_time(nanosecond).

pid(P) when is_pid(P); is_port(P) -> beamside_ops:pid_text(P);
pid(P) -> beamside_ops:text(P, #{chars => 64}).

atom(A) -> io_lib:format("~0tp", [A]).

term(T, Opts) -> beamside_ops:text(T, Opts).

args(Args, Opts) when is_list(Args) ->
    ["(", lists:join(", ", [term(A, Opts) || A <- Args]), ")"];
args(Arity, _) ->
    ["/", integer_to_list(Arity)].
