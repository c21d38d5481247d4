%%% ===========================================================================
%%% beamside_plugin_ranch -- ranch listeners (cowboy's too): port, limit, load.
%%% ===========================================================================
%%%
%%% Applies when the ranch application runs (cowboy's listeners are ranch
%%% listeners: they show here with protocol cowboy_clear or cowboy_tls).
%%% Runs in a process bounded by plugin_timeout_ms (see beamside_plugin).
%%%
%%%   version      ranch's application version (binary)
%%%   listeners    #{Ref (printed, binary) => #{transport, protocol, port,
%%%                  ip (printed), status, max_connections (integer |
%%%                  infinity), active_connections, all_connections,
%%%                  accepted, terminated} | {error, Reason}}
%%%                  for at most max_listeners (50) listeners: ranch:info/1
%%%                  of each (ranch 1.6 to 2.x), asked while half of
%%%                  plugin_timeout_ms lasts (then {error, no_time}).
%%%                  accepted / terminated: connections since the listener
%%%                  started (ranch 2 counts them per connection supervisor;
%%%                  absent before ranch 2).  Never the transport or
%%%                  protocol options: they hold certificates, keys and
%%%                  passwords.
%%%   listeners_truncated  true when there are more
%%%
%%% Cost: per listener, ranch:info/1 counts the children of each of its
%%% connection supervisors (num_conns_sups calls, 10 by default).
%%% ===========================================================================
-module(beamside_plugin_ranch).
-behaviour(beamside_plugin).

-export([name/0, applies/1, collect/1]).

-define(REF_BYTES, 200).

-spec name() -> atom().
name() -> ranch.

-spec applies([atom()]) -> boolean().
applies(Apps) -> lists:member(ranch, Apps).

-spec collect(map()) -> map().
collect(Opts) ->
    Max = beamside_agent:int_opt(max_listeners, Opts, 50, {0, 10000}),
    Deadline = beamside_plugin:deadline(Opts),
    Refs = [Ref || {Ref, _Sup} <- ranch_server:get_listener_sups()],
    Listeners = [{printed(Ref), listener(Ref, Deadline)} || Ref <- lists:sublist(Refs, Max)],
    Base = #{listeners => maps:from_list(Listeners),
             listeners_truncated => length(Refs) > Max},
    beamside_plugin:with_version(ranch, Base).

listener(Ref, Deadline) ->
    case erlang:monotonic_time(millisecond) < Deadline of
        false ->
            {error, no_time};
        true ->
            case beamside_agent:safe(fun() -> ranch:info(Ref) end) of
                {error, _} = E -> E;
                Info when is_map(Info) -> summary(Info);
                Info when is_list(Info) -> summary(maps:from_list(Info));  % ranch 1.x
                Other -> {error, {unexpected, beamside_agent:reason(Other)}}
            end
    end.

summary(Info) ->
    Base = maps:with([port, status, max_connections, active_connections, all_connections],
                     Info),
    Named = maps:fold(fun(K, V, Acc) when is_atom(V) -> Acc#{K => V};
                         (_, _, Acc) -> Acc
                      end, Base, maps:with([transport, protocol], Info)),
    WithIp = case Info of
                 #{ip := Ip} -> Named#{ip => ip(Ip)};
                 _ -> Named
             end,
    case Info of
        #{metrics := M} when is_map(M) ->
            WithIp#{accepted => sum(accept, M), terminated => sum(terminate, M)};
        _ ->
            WithIp
    end.

sum(What, Metrics) ->
    maps:fold(fun({conns_sup, _, W}, N, Acc) when W =:= What, is_integer(N) -> Acc + N;
                 (_, _, Acc) -> Acc
              end, 0, Metrics).

ip(Ip) when is_tuple(Ip) ->
    case inet:ntoa(Ip) of
        {error, _} -> beamside_agent:reason(Ip);
        Text -> list_to_binary(Text)
    end;
ip(Other) ->
    beamside_agent:reason(Other).

printed(Name) -> beamside_plugin:printed(Name, ?REF_BYTES).
