%%% ===========================================================================
%%% beamside_lager -- a lager backend that forwards log messages to beamside.
%%% ===========================================================================
%%%
%%% Added by beamside_events, only when lager runs (whereis(lager_event)), as
%%% a plain handler of lager's default sink:
%%%
%%%   gen_event:add_handler(lager_event, beamside_lager, Args)
%%%
%%% (the request that call sends, with a time limit; not a supervised
%%% handler: lager_event would link to the forwarder and hand its exit to
%%% every other backend's handle_info/2).  The forwarder deletes it when the
%%% last sidecar that asked for logs is gone and when it stops; if the
%%% forwarder was killed, this handler removes itself at its next message
%%% and beamside_watchdog removes it too.  After adding or deleting it, the forwarder calls
%%% lager:update_loglevel_config(lager_event) when lager exports it, so that
%%% lager's global level mask follows ours (lager skips formatting messages
%%% that no backend wants).
%%%
%%% The lager backend contract (gen_event in the lager_event manager):
%%%   init(Args)                            -> {ok, State}
%%%   handle_call(get_loglevel, S)          -> {ok, {mask, Mask}, S}
%%%   handle_call({set_loglevel, Level}, S) -> {ok, ok, S'}
%%%   handle_event({log, LagerMsg}, S)      -> {ok, S}
%%% with LagerMsg the #lager_msg{} record of lager 3:
%%%   {lager_msg, Destinations, Metadata, Severity, {Date, Time}, Timestamp, Message}
%%% read by position here (beamside does not compile against lager), Message
%%% already formatted (chardata), Metadata a proplist (pid, module, function,
%%% line, node, application, ...), Timestamp an erlang:timestamp().  A
%%% message is wanted when its severity is at or above our level, or when it
%%% names this backend in its destinations (lager traces).  Level masks use
%%% lager's bits: debug 128, info 64, notice 32, warning 16, error 8,
%%% critical 4, alert 2, emergency 1.
%%%
%%% Args: #{level => Level, max_bytes, max_queue, drops} (drops: the counters
%%% array of beamside_logger; a drop is counted as `lager_queue_full').
%%% Forwarded events are the same maps as beamside_logger's with
%%% `source => lager'.  Secrets: the text is scanned for PEM blocks and URL
%%% passwords, a metadata value whose key names a secret is its marker
%%% (beamside_logger:scrub/1, meta_value/2; lager formats the message before
%%% we see it, so its arguments cannot be redacted by structure).
%%% handle_event never raises: lager would remove a crashing backend.  Cost
%%% per message: a process_info, a binary scan, a few map operations, one
%%% send, in lager's event manager process.
%%% ===========================================================================
-module(beamside_lager).
-behaviour(gen_event).

-export([init/1, handle_event/2, handle_call/2, handle_info/2, terminate/2, code_change/3]).
-export([mask/1]).

-define(FORWARDER, beamside_events).

-record(b, {level :: atom(),
            mask :: non_neg_integer(),
            max_bytes :: pos_integer(),
            max_queue :: pos_integer(),
            drops :: counters:counters_ref() | undefined}).

init(Args) when is_map(Args) ->
    Level = valid_level(maps:get(level, Args, warning)),
    {ok, #b{level = Level,
            mask = mask(Level),
            max_bytes = beamside_agent:int_opt(max_bytes, Args, 8192, {256, 1048576}),
            max_queue = beamside_agent:int_opt(max_queue, Args, 5000, {10, 1000000}),
            drops = maps:get(drops, Args, undefined)}};
init(_) ->
    {error, badarg}.

handle_call(get_loglevel, #b{mask = Mask} = B) ->
    {ok, {mask, Mask}, B};
handle_call({set_loglevel, Level}, B) ->
    case valid_level(Level) of
        none when Level =/= none -> {ok, {error, bad_log_level}, B};
        L -> {ok, ok, B#b{level = L, mask = mask(L)}}
    end;
handle_call(_Other, B) ->
    {ok, {error, unknown_call}, B}.

handle_event({log, Msg}, B) ->
    case whereis(?FORWARDER) of
        undefined ->
            remove_handler;                     % the forwarder is gone for good
        _ ->
            try forward(Msg, B)
            catch _:_ -> beamside_logger:drop(B#b.drops, error)
            end,
            {ok, B}
    end;
handle_event(_Other, B) ->
    {ok, B}.

handle_info(_Info, B) ->
    {ok, B}.

terminate(_Reason, _B) ->
    ok.

code_change(_OldVsn, B, _Extra) ->
    {ok, B}.

%%% ---------------------------------------------------------------------------

%% lager's mask for "Level and above" (none: 0).
-spec mask(atom()) -> non_neg_integer().
mask(Level) ->
    case bit(Level) of
        0 -> 0;
        Bit -> (Bit bsl 1) - 1
    end.

bit(debug) -> 128;
bit(info) -> 64;
bit(notice) -> 32;
bit(warning) -> 16;
bit(error) -> 8;
bit(critical) -> 4;
bit(alert) -> 2;
bit(emergency) -> 1;
bit(_) -> 0.

valid_level(L) ->
    case bit(L) of
        0 -> none;
        _ -> L
    end.

forward({lager_msg, Dest, Meta, Severity, _DateTime, Timestamp, Message}, B) ->
    case (bit(Severity) band B#b.mask) =/= 0 orelse
        (is_list(Dest) andalso lists:member(?MODULE, Dest)) of
        true -> send(event(Meta, Severity, Timestamp, Message, B), B);
        false -> ok
    end;
forward(_Other, _B) ->
    ok.

send(Event, #b{max_queue = MaxQ, drops = Drops}) ->
    case whereis(?FORWARDER) of
        undefined ->
            ok;                                 % lager_event drops us soon (sup handler)
        Pid ->
            case erlang:process_info(Pid, message_queue_len) of
                {message_queue_len, N} when N < MaxQ ->
                    Pid ! {beamside_log, Event},
                    ok;
                _ ->
                    beamside_logger:drop(Drops, lager_queue_full)
            end
    end.

event(Meta0, Severity, Timestamp, Message, #b{max_bytes = Max}) ->
    Meta = case is_list(Meta0) of
               true -> Meta0;
               false -> []
           end,
    Bin = case unicode:characters_to_binary(Message) of
              Good when is_binary(Good) -> Good;
              _ -> unicode:characters_to_binary(
                     io_lib:format("~tp", [Message], [{chars_limit, Max}]))
          end,
    Text = beamside_agent:truncate(beamside_logger:scrub(Bin), Max),
    Time = case Timestamp of
               {Mega, Sec, Micro} when is_integer(Mega), is_integer(Sec), is_integer(Micro) ->
                   ((Mega * 1000000 + Sec) * 1000000 + Micro) * 1000;
               _ ->
                   os:system_time(nanosecond)
           end,
    Pid = case lists:keyfind(pid, 1, Meta) of
              {pid, P} when is_pid(P) -> beamside_agent:pid_bin(P);
              {pid, P} when is_list(P) -> unicode:characters_to_binary(P);
              _ -> undefined
          end,
    %% a pid term, not lager's string: the message may be lager's copy of an
    %% error_logger event beamside_logger forwarded already (beamside_events)
    Redirected = case lists:keyfind(pid, 1, Meta) of
                     {pid, RP} -> is_pid(RP);
                     false -> false
                 end,
    Base = #{kind => log, source => lager, level => Severity, time => Time, node => node(),
             msg => Text, truncated => Text =/= Bin, redirected => Redirected},
    B1 = case Pid of
             undefined -> Base;
             _ -> Base#{pid => Pid}
         end,
    B2 = case {lists:keyfind(module, 1, Meta), lists:keyfind(function, 1, Meta),
               lists:keyfind(line, 1, Meta)} of
             {{module, M}, {function, F}, _} when is_atom(M), is_atom(F) ->
                 B1#{mfa => <<(atom_to_binary(M, utf8))/binary, ":",
                              (atom_to_binary(F, utf8))/binary>>};
             _ -> B1
         end,
    B3 = case lists:keyfind(line, 1, Meta) of
             {line, L} when is_integer(L) -> B2#{line => L};
             _ -> B2
         end,
    Extra = [{K, V} || {K, V} <- lists:sublist(Meta, 32), is_atom(K),
                       not lists:member(K, [pid, module, function, line, node])],
    case Extra of
        [] -> B3;
        _ -> B3#{metadata => maps:from_list([{K, beamside_logger:meta_value(K, V)}
                                             || {K, V} <- Extra])}
    end.
