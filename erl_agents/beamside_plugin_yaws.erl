%%% ===========================================================================
%%% beamside_plugin_yaws -- Yaws: its servers, connections and requests.
%%% ===========================================================================
%%%
%%% Applies when the yaws application runs (tested with Debian's 2.1).  Runs
%%% in a process bounded by plugin_timeout_ms (see beamside_plugin).
%%%
%%% Yaws runs one process per group of virtual servers sharing an address
%%% and port; each answers {self(), status} with its state, which counts
%%% the connections it has open, those it accepted and the requests it
%%% served.  Asked here one by one with a timeout (yaws_server:gs_status/0
%%% waits for ever), at most max_servers (50) of them:
%%%
%%%   version      Yaws' application version (binary)
%%%   servers      #{<<"Ip:Port">> => #{port, ip (printed), names (the
%%%                servernames of the group, at most 10), active_connections,
%%%                accepted (connections since it started), requests (those
%%%                of the connections it closed: Yaws adds a connection's
%%%                requests when it ends)}
%%%                | {error, Reason}}
%%%   servers_truncated  true when there are more
%%%
%%% Only numbers and names leave the node: the group's configuration in the
%%% reply (paths, auth settings) stays in this short-lived process.
%%% ===========================================================================
-module(beamside_plugin_yaws).
-behaviour(beamside_plugin).

-export([name/0, applies/1, collect/1]).

-define(CALL_MS, 500).
-define(MAX_NAMES, 10).
-define(NAME_BYTES, 200).

-spec name() -> atom().
name() -> yaws.

-spec applies([atom()]) -> boolean().
applies(Apps) -> lists:member(yaws, Apps).

-spec collect(map()) -> map().
collect(Opts) ->
    Max = beamside_agent:int_opt(max_servers, Opts, 50, {0, 1000}),
    Deadline = beamside_plugin:deadline(Opts),
    [_Server | Groups] = gen_server:call(yaws_server, pids,
                                         beamside_plugin:call_ms(Deadline, ?CALL_MS)),
    Servers = [group(Pid, Deadline) || Pid <- lists:sublist(Groups, Max), is_pid(Pid)],
    beamside_plugin:with_version(
      yaws, #{servers => maps:from_list(Servers), servers_truncated => length(Groups) > Max}).

%% The state of one group process: {gs, GConf, [SConf], Ssl, CertInfo,
%% Listen, Connections, Sessions, Reqs} (yaws 2.x).
group(Pid, Deadline) ->
    Pid ! {self(), status},
    receive
        {Pid, GS} when is_tuple(GS), tuple_size(GS) >= 9, element(1, GS) =:= gs ->
            Confs = [SC || SC <- element(3, GS), is_tuple(SC), tuple_size(SC) >= 10,
                           element(1, SC) =:= sconf],
            {Port, Ip} = case Confs of
                             [First | _] -> {element(2, First), element(9, First)};
                             [] -> {undefined, undefined}
                         end,
            {key(Ip, Port),
             #{port => Port, ip => ip(Ip),
               names => [beamside_plugin:printed(name(element(10, SC)), ?NAME_BYTES)
                         || SC <- lists:sublist(Confs, ?MAX_NAMES)],
               active_connections => element(7, GS),
               accepted => element(8, GS),
               requests => element(9, GS)}}
    after beamside_plugin:call_ms(Deadline, ?CALL_MS) ->
            {beamside_agent:pid_bin(Pid), {error, timeout}}
    end.

key(Ip, Port) when is_integer(Port) -> <<(ip(Ip))/binary, ":", (integer_to_binary(Port))/binary>>;
key(Ip, _) -> ip(Ip).

ip(Ip) when is_tuple(Ip) ->
    case inet:ntoa(Ip) of
        {error, _} -> beamside_agent:reason(Ip);
        Text -> list_to_binary(Text)
    end;
ip(Other) ->
    beamside_plugin:printed(Other, ?NAME_BYTES).

name(Name) when is_list(Name) ->
    case unicode:characters_to_binary(Name) of
        B when is_binary(B) -> B;
        _ -> <<"?">>
    end;
name(Name) -> Name.
