%%% ===========================================================================
%%% beamside_logger -- the OTP logger handler that forwards log events.
%%% ===========================================================================
%%%
%%% Installed by beamside_events (the forwarder, see there) as the logger
%%% handler with id `beamside':
%%%
%%%   logger:add_handler(beamside, beamside_logger,
%%%                      #{level => Level, config => #{max_bytes => 8192, ...}})
%%%
%%% and removed by it when the last sidecar that asked for logs is gone.
%%% log/2 runs in the process that logs, so it is built to be cheap and to
%%% never block nor crash:
%%%
%%%   * the event is formatted here, bounded: a `{Format, Args}' message and
%%%     a report without report_cb through io_lib with `chars_limit', a report
%%%     with a report_cb through it (`depth' and `chars_limit' given to a
%%%     report_cb/2), a `{string, S}' through `~ts' with `chars_limit'; the
%%%     text is then cut at max_bytes with "..." and `truncated => true';
%%%   * a callback or io_lib:format that raises with those limits (OTP 25.2's
%%%     proc_lib on the crash of a BIF error, in unicode_util) is called
%%%     again: chars_limit unlimited with depth at most 16, then, for a term
%%%     of at most 100000 words, with no limits as logger's own formatter
%%%     does; only what fails even so ends as `FORMAT ERROR: ...';
%%%   * secrets never leave in clear: the report or the format's arguments
%%%     are passed through beamside_redact before formatting (the value of a
%%%     secret-named key at any depth; a walk of at most ?REDACT_BUDGET
%%%     terms), the formatted text is scanned for PEM blocks and URL
%%%     passwords, and a metadata value whose key names a secret is its
%%%     marker (see beamside_redact);
%%%   * it is handed to the forwarder with a plain local send ONLY if the
%%%     forwarder's message queue is shorter than max_queue; otherwise (or
%%%     when the forwarder is not there) a drop is counted in a `counters'
%%%     array held in the handler config (created by adding_handler/1, so it
%%%     goes away with the handler: no ETS or persistent_term residue);
%%%   * every exception is caught and counted (`error'): logger removes a
%%%     handler whose log/2 crashes, and we log nothing ourselves, so an error
%%%     in here can never loop back into logger;
%%%   * if the forwarder is gone (killed), the handler asks logger to remove
%%%     it (once, from a fresh process), so it never outlives beamside.
%%%
%%% Handler config `config' keys (all set by beamside_events):
%%%   max_bytes  (8192)   formatted message limit, bytes.
%%%   depth      (30)     term depth given to report callbacks / ~P.
%%%   max_queue  (5000)   forwarder queue bound.
%%%   single_line (false) passed to report_cb/2.
%%%   drops               the counters array (see ?C_* below).
%%%
%%% The event handed over (`{beamside_log, Event}'), a map:
%%%   kind => log, source => logger, level, time (ns since the epoch, from
%%%   meta time, microseconds * 1000), node, pid (text), msg (binary),
%%%   truncated (boolean) and, when known: registered_name (atom), mfa
%%%   (binary "m:f/a"), file (binary), line, domain ([atom()]), report (kind:
%%%   crash_report | supervisor_report | progress | application_exit |
%%%   gen_server_terminate | gen_event_terminate | gen_statem_terminate |
%%%   std_error | std_warning | std_info | error_report | warning_report |
%%%   info_report | error_msg | warning_msg | info_msg | report), sasl (true
%%%   for domain [otp, sasl | _]), metadata (#{Key => atom | integer |
%%%   binary}: the other meta keys, e.g. Elixir Logger's `application',
%%%   `crash_reason' or Logger.metadata/1 keys; at most 32, each value
%%%   printed within 256 bytes).
%%%
%%% Cost: formatting (bounded by max_bytes) plus one process_info and one
%%% send per event in the logging process; see bench/bench_log_handler.py.
%%% ===========================================================================
-module(beamside_logger).

-export([adding_handler/1, changing_config/3, removing_handler/1, log/2]).
-export([format_event/2, drops/1, new_drops/0, drop/2]).
-export([level_int/1, scrub/1, meta_value/2]).

-define(FORWARDER, beamside_events).
-define(MAX_META, 32).
-define(META_BYTES, 256).
%% The retries of a report callback that failed with our limits (see text/3).
-define(RETRY_DEPTH, 16).
-define(RETRY_WORDS, 100000).            % flat size of a term formatted unlimited
-define(REDACT_BUDGET, 50000).           % terms beamside_redact walks in one event

%% Slots of the drops counters array.
-define(C_QUEUE_FULL, 1).
-define(C_NO_FORWARDER, 2).
-define(C_ERROR, 3).
-define(C_REMOVING, 4).
-define(C_LAGER_QUEUE_FULL, 5).
-define(C_SIZE, 5).

-define(STD_META, [time, pid, gl, mfa, file, line, domain, report_cb, error_logger,
                   logger_formatter]).

%%% ---------------------------------------------------------------------------
%%% logger handler callbacks

adding_handler(#{config := Cfg} = Config) when is_map(Cfg) ->
    {ok, Config#{config => normalise(Cfg, undefined)}};
adding_handler(Config) ->
    {ok, Config#{config => normalise(#{}, undefined)}}.

%% Keep our drops array across config changes (set and update alike),
%% unless the new config brings one (a restarted forwarder has its own).
changing_config(_SetOrUpdate, #{config := Old}, #{config := New} = Config) when is_map(New) ->
    Drops = maps:get(drops, New, maps:get(drops, Old, undefined)),
    {ok, Config#{config => normalise(New, Drops)}};
changing_config(_SetOrUpdate, #{config := Old}, Config) ->
    {ok, Config#{config => Old}}.

removing_handler(_Config) ->
    ok.

log(Event, #{config := Cfg}) ->
    try forward(Event, Cfg)
    catch _:_ -> count(Cfg, ?C_ERROR)
    end;
log(_Event, _Config) ->
    ok.

%%% ---------------------------------------------------------------------------
%%% shared with beamside_events / beamside_lager

-spec new_drops() -> counters:counters_ref().
new_drops() ->
    counters:new(?C_SIZE, [write_concurrency]).

%% Cumulative drops counted in the array, by reason.
-spec drops(counters:counters_ref() | undefined) -> #{atom() => non_neg_integer()}.
drops(undefined) ->
    #{};
drops(Ref) ->
    maps:from_list([{K, counters:get(Ref, I)}
                    || {K, I} <- [{queue_full, ?C_QUEUE_FULL}, {no_forwarder, ?C_NO_FORWARDER},
                                  {handler_error, ?C_ERROR},
                                  {lager_queue_full, ?C_LAGER_QUEUE_FULL}],
                       counters:get(Ref, I) > 0]).

-spec drop(counters:counters_ref() | undefined, atom()) -> ok.
drop(undefined, _) -> ok;
drop(Ref, lager_queue_full) -> counters:add(Ref, ?C_LAGER_QUEUE_FULL, 1);
drop(Ref, queue_full) -> counters:add(Ref, ?C_QUEUE_FULL, 1);
drop(Ref, _) -> counters:add(Ref, ?C_ERROR, 1).

%% logger's level order, as an integer (higher = more severe).
-spec level_int(atom()) -> integer().
level_int(emergency) -> 7;
level_int(alert) -> 6;
level_int(critical) -> 5;
level_int(error) -> 4;
level_int(warning) -> 3;
level_int(notice) -> 2;
level_int(info) -> 1;
level_int(debug) -> 0;
level_int(all) -> -1;
level_int(_) -> 99.                             % none: nothing passes

%%% ---------------------------------------------------------------------------
%%% log/2

normalise(Cfg, KeepDrops) ->
    Int = fun(K, D, Range) -> beamside_agent:int_opt(K, Cfg, D, Range) end,
    Drops = case KeepDrops of
                undefined -> case maps:get(drops, Cfg, undefined) of
                                 undefined -> new_drops();
                                 R -> R
                             end;
                R -> R
            end,
    #{max_bytes => Int(max_bytes, 8192, {256, 1048576}),
      depth => Int(depth, 30, {3, 1000}),
      max_queue => Int(max_queue, 5000, {10, 1000000}),
      single_line => maps:get(single_line, Cfg, false) =:= true,
      drops => Drops}.

forward(Event, #{max_queue := MaxQ} = Cfg) ->
    case whereis(?FORWARDER) of
        undefined ->
            count(Cfg, ?C_NO_FORWARDER),
            remove_self(Cfg);
        Pid ->
            case erlang:process_info(Pid, message_queue_len) of
                {message_queue_len, N} when N < MaxQ ->
                    Pid ! {beamside_log, format_event(Event, Cfg)},
                    ok;
                {message_queue_len, _} ->
                    count(Cfg, ?C_QUEUE_FULL);
                undefined ->
                    count(Cfg, ?C_NO_FORWARDER)
            end
    end.

count(#{drops := Ref}, Slot) -> counters:add(Ref, Slot, 1);
count(_, _) -> ok.

%% The forwarder is gone for good (killed): take the handler out, once.
remove_self(#{drops := Ref}) ->
    case counters:get(Ref, ?C_REMOVING) of
        0 ->
            counters:add(Ref, ?C_REMOVING, 1),
            _ = spawn(fun() -> catch logger:remove_handler(beamside) end),
            ok;
        _ ->
            ok
    end.

%% The event as a map for the sidecar (see the module header).
-spec format_event(logger:log_event(), map()) -> map().
format_event(#{level := Level, msg := Msg} = Event, Cfg) ->
    Meta = maps:get(meta, Event, #{}),
    Max = maps:get(max_bytes, Cfg, 8192),
    {Text, Cut} = message(Msg, Meta, Cfg),
    Pid = case maps:get(pid, Meta, undefined) of
              P when is_pid(P) -> P;
              _ -> self()
          end,
    Time = case maps:get(time, Meta, undefined) of
               T when is_integer(T) -> T * 1000;
               _ -> os:system_time(nanosecond)
           end,
    Base = #{kind => log, source => logger, level => Level, time => Time, node => node(),
             pid => beamside_agent:pid_bin(Pid), msg => Text,
             truncated => Cut orelse byte_size(Text) >= Max},
    lists:foldl(fun(F, Acc) -> F(Meta, Msg, Pid, Acc) end, Base,
                [fun add_location/4, fun add_domain/4, fun add_report/4, fun add_name/4,
                 fun add_metadata/4]).

message(Msg0, Meta, #{max_bytes := Max} = Cfg) ->
    Msg = redact_msg(Msg0),
    Text = try text(Msg, Meta, Cfg)
           catch _:_ -> fallback(Msg, Max)
           end,
    Bin = scrub(to_utf8(Text)),
    Cut = beamside_agent:truncate(Bin, Max),
    {Cut, Cut =/= Bin}.

text({string, S}, _Meta, #{max_bytes := Max}) when is_binary(S) ->
    binary:part(S, 0, min(byte_size(S), Max + 4));
text({string, S}, _Meta, #{max_bytes := Max}) ->
    io_lib:format("~ts", [S], [{chars_limit, Max}]);
text({report, Report}, #{report_cb := Cb}, #{max_bytes := Max, depth := D} = Cfg)
  when is_function(Cb, 2) ->
    SL = maps:get(single_line, Cfg),
    try Cb(Report, #{depth => D, chars_limit => Max, single_line => SL})
    catch _:_ ->
            %% OTP 25.2's proc_lib callback raises in unicode_util when a
            %% numeric chars_limit meets the extended error info of a BIF
            %% (ets:delete(no_such_table, x)); logger's formatter (chars
            %% unlimited) prints the report fine.  Again without chars_limit,
            %% a smaller depth bounding the text (cut to max_bytes by message/3),
            %% then as logger would call it, for a report of bounded size.
            try Cb(Report, #{depth => min(D, ?RETRY_DEPTH), chars_limit => unlimited,
                             single_line => SL})
            catch C:R:St ->
                    small(Report) orelse erlang:raise(C, R, St),
                    Cb(Report, #{depth => unlimited, chars_limit => unlimited,
                                 single_line => SL})
            end
    end;
text({report, Report}, #{report_cb := Cb}, #{max_bytes := Max}) when is_function(Cb, 1) ->
    {Format, Args} = Cb(Report),
    format(Format, Args, Max);
text({report, Report}, _Meta, #{max_bytes := Max}) ->
    {Format, Args} = logger:format_report(Report),
    format(Format, Args, Max);
text({Format, Args}, _Meta, #{max_bytes := Max}) when is_list(Args) ->
    format(Format, Args, Max).

%% The message with the secrets of its report or arguments redacted.
redact_msg({report, Report}) ->
    {report, beamside_redact:redact(Report, #{budget => ?REDACT_BUDGET})};
redact_msg({Format, Args}) when is_list(Args) ->
    case beamside_redact:redact(Args, #{budget => ?REDACT_BUDGET}) of
        Redacted when is_list(Redacted) -> {Format, Redacted};
        _ -> {Format, Args}
    end;
redact_msg(Msg) ->
    Msg.

%% PEM blocks and URL passwords of a formatted text.
-spec scrub(binary()) -> binary().
scrub(Bin) ->
    case beamside_redact:redact(Bin) of
        Out when is_binary(Out) -> Out;
        _ -> <<"<redacted>">>
    end.

%% io_lib:format with chars_limit; if that raises, without it for arguments
%% of bounded size (the same chars_limit weakness as above).
format(Format, Args, Max) ->
    try io_lib:format(Format, Args, [{chars_limit, Max}])
    catch C:R:St ->
            small(Args) orelse erlang:raise(C, R, St),
            io_lib:format(Format, Args)
    end.

small(Term) ->
    erts_debug:flat_size(Term) =< ?RETRY_WORDS.

%% What is left when the format string and its arguments do not match.
fallback(Msg, Max) ->
    io_lib:format("FORMAT ERROR: ~tp", [Msg], [{chars_limit, Max}]).

to_utf8(Bin) when is_binary(Bin) ->
    Bin;
to_utf8(Chars) ->
    case unicode:characters_to_binary(Chars) of
        B when is_binary(B) -> B;
        _ -> try iolist_to_binary(Chars)
             catch _:_ -> <<"(unprintable)">>
             end
    end.

add_location(Meta, _Msg, _Pid, Acc) ->
    A1 = case maps:get(mfa, Meta, undefined) of
             {_, _, _} = MFA -> Acc#{mfa => beamside_agent:mfa_bin(MFA)};
             _ -> Acc
         end,
    A2 = case maps:get(file, Meta, undefined) of
             F when is_list(F); is_binary(F) -> A1#{file => short(F, 512)};
             _ -> A1
         end,
    case maps:get(line, Meta, undefined) of
        L when is_integer(L) -> A2#{line => L};
        _ -> A2
    end.

add_domain(Meta, _Msg, _Pid, Acc) ->
    case maps:get(domain, Meta, undefined) of
        [otp, sasl | _] = D -> Acc#{domain => D, sasl => true};
        D when is_list(D) -> Acc#{domain => lists:sublist([A || A <- D, is_atom(A)], 8)};
        _ -> Acc
    end.

add_report(Meta, Msg, _Pid, Acc) ->
    case report_kind(Msg, Meta) of
        undefined -> Acc;
        Kind -> Acc#{report => Kind}
    end.

add_name(_Meta, _Msg, Pid, Acc) when node(Pid) =:= node() ->
    case erlang:process_info(Pid, registered_name) of
        {registered_name, Name} when is_atom(Name) -> Acc#{registered_name => Name};
        _ -> Acc
    end;
add_name(_Meta, _Msg, _Pid, Acc) ->
    Acc.

add_metadata(Meta, _Msg, _Pid, Acc) ->
    Extra = maps:without(?STD_META, Meta),
    case map_size(Extra) of
        0 -> Acc;
        _ ->
            Keys = lists:sublist(lists:sort(maps:keys(Extra)), ?MAX_META),
            Acc#{metadata => maps:from_list([{K, meta_value(K, maps:get(K, Extra))}
                                             || K <- Keys])}
    end.

%% A metadata value, redacted as the value of key K (see beamside_redact).
-spec meta_value(term(), term()) -> term().
meta_value(K, V0) ->
    {_, V} = beamside_redact:redact({K, V0}, #{budget => ?REDACT_BUDGET}),
    case beamside_redact:is_marker(V) of
        true -> list_to_binary(V);
        false -> meta_value(V)
    end.

meta_value(V) when is_atom(V); is_integer(V) -> V;
meta_value(V) when is_binary(V) -> beamside_agent:truncate(V, ?META_BYTES);
meta_value(V) -> short(V, ?META_BYTES).

%% Bounded printed text of any term (a string stays a string).
short(V, Max) ->
    Text = try
               case io_lib:printable_unicode_list(V) of
                   true -> unicode:characters_to_binary(V);
                   false when is_binary(V) -> V;
                   false -> to_utf8(io_lib:format("~0tP", [V, 10], [{chars_limit, Max}]))
               end
           catch _:_ -> <<"(unprintable)">>
           end,
    beamside_agent:truncate(Text, Max).

%% The classic error_logger / SASL report kinds.
%% OTP's labelled reports first (gen_server & co also carry an error_logger
%% tag in meta); then error_logger's tag (error_logger:error_msg/1 & co
%% send a report labelled {error_logger, _}).
report_kind(Msg, Meta) ->
    Label = case Msg of
                {report, #{label := L}} -> label_kind(L);
                _ -> undefined
            end,
    case {Label, Meta} of
        {report, #{error_logger := #{tag := Tag} = EL}} -> tag_kind(Tag, EL);
        {undefined, #{error_logger := #{tag := Tag} = EL}} -> tag_kind(Tag, EL);
        _ -> Label
    end.

tag_kind(Tag, EL) ->
    case {Tag, maps:get(type, EL, undefined)} of
        {_, T} when T =:= std_error; T =:= std_warning; T =:= std_info;
                    T =:= crash_report; T =:= supervisor_report; T =:= progress -> T;
        {error, _} -> error_msg;
        {warning_msg, _} -> warning_msg;
        {info_msg, _} -> info_msg;
        {error_report, _} -> error_report;
        {warning_report, _} -> warning_report;
        {info_report, _} -> info_report;
        _ -> report
    end.

label_kind({proc_lib, crash}) -> crash_report;
label_kind({supervisor, progress}) -> progress;
label_kind({supervisor, _}) -> supervisor_report;
label_kind({application_controller, progress}) -> progress;
label_kind({application_controller, exit}) -> application_exit;
label_kind({gen_server, terminate}) -> gen_server_terminate;
label_kind({gen_event, terminate}) -> gen_event_terminate;
label_kind({gen_statem, terminate}) -> gen_statem_terminate;
label_kind(_) -> report.
