%%% ===========================================================================
%%% beamside_ops_ports -- ports and sockets, as inet:i() lists them: the
%%% Ports/ListPorts tool of the control plane.
%%% ===========================================================================
%%%
%%% Called by the sidecar through rex; the reply shape and the rules every
%%% tool follows are in beamside_ops's header.
%%%
%%%   ports(Opts)  every port (erlang:ports/0) and every socket of the
%%%                socket module (socket:which_sockets/0, when that module
%%%                is loaded: it is never loaded here), the top limit of
%%%                them by sort_by:
%%%       #{ports => [Entry], total, walked, vanished, truncated,
%%%         by_type => #{Type => Count}}
%%%       Entry: #{id (#Port<0.12> | #Socket<...>), kind, driver, local,
%%%                remote, state, owner_pid, owner_name, owner_call, input,
%%%                output, queue_size, memory, os_pid (-1 when none),
%%%                options => #{Name => Text}}
%%%       kind   tcp | udp | sctp (inet driver ports), socket (the socket
%%%              module), file (efile, before OTP 21), spawn (a port with an OS pid: an
%%%              external program; driver is then its command), fd (an
%%%              N/M file descriptor port), driver (any other driver:
%%%              forker, tty_sl, a driver of an application)
%%%       input, output  bytes received and sent: recv_oct and send_oct of
%%%              inet:getstat for inet ports, the read_byte and write_byte
%%%              counters of socket:info/1 for sockets, port_info input and
%%%              output for the others
%%%       queue_size  bytes queued in the port (for an inet port, its send
%%%              queue); memory  port_info memory, bytes (0 for sockets)
%%%       local, remote  address text (ip:port, [ipv6]:port, a unix path);
%%%              state  the inet status (listen, connected, ...) or the
%%%              socket's read and write states; options: the inet options
%%%              that matter (active, packet, nodelay, keepalive, buffers,
%%%              watermarks) or a socket's domain, type and protocol
%%%       owner_name: registered name; owner_call: the initial call
%%%              (proc_lib's when it has one)
%%%       by_type: counts as recon:port_types gives them (driver names;
%%%              spawn, fd, and socket for the socket module), over every
%%%              port walked, at most 50 types, the rest as other
%%%   Options: kind (a binary: one kind above, or absent for all); sort_by
%%%   (input | output | queue_size | memory | id, default input, largest
%%%   first); limit (100, <= 2000); timeout_ms (5000, <= 60000) for the
%%%   whole walk, which stops at the deadline with truncated => true (in
%%%   the first pass: the listing covers the ports walked; in the second:
%%%   the entries not yet detailed are left out).
%%%   Ports closed during the walk are counted in vanished.  Every inet
%%%   call is one port control of prim_inet (what inet:i() does), answered
%%%   by the driver: it waits for the port's lock, never for its owner
%%%   process; a port closed in between raises, caught.  getstat for the
%%%   sort runs on every inet port, the address, status and option calls
%%%   only on the ports listed.  socket:which_sockets/0 asks the socket
%%%   registry: it runs in its own helper with a 1 s limit.
%%% ===========================================================================
-module(beamside_ops_ports).

-export([ports/1]).

-import(beamside_ops, [int/5, pid_text/1, run/3, invalid/1, bad_opts/0]).

-define(MAX_TYPES, 50).
-define(DRIVER_BYTES, 64).
-define(SOCKETS_MS, 1000).
-define(KINDS, [<<"tcp">>, <<"udp">>, <<"sctp">>, <<"socket">>, <<"file">>, <<"spawn">>,
                <<"fd">>, <<"driver">>]).

-type reply(T) :: beamside_ops:reply(T).

-spec ports(map()) -> reply(map()).
ports(Opts) when is_map(Opts) ->
    Kind = maps:get(kind, Opts, all),
    Sort = maps:get(sort_by, Opts, input),
    case {lists:member(Kind, [all | ?KINDS]),
          lists:member(Sort, [input, output, queue_size, memory, id])} of
        {false, _} ->
            invalid(<<"kind must be one of tcp, udp, sctp, socket, file, spawn, fd, driver">>);
        {_, false} ->
            invalid(<<"sort_by must be input, output, queue_size, memory or id">>);
        {true, true} ->
            Limit = int(limit, Opts, 100, 1, 2000),
            Timeout = int(timeout_ms, Opts, 5000, 100, 60000),
            Deadline = erlang:monotonic_time(millisecond) + Timeout,
            Heap = {max_heap_size, #{size => beamside_ops:helper_heap(), kill => true,
                                     error_logger => false}},
            run(fun() -> list(Kind, Sort, Limit, Deadline) end, Timeout + 1000, [Heap])
    end;
ports(_) ->
    bad_opts().

list(Kind, Sort, Limit, Deadline) ->
    All = erlang:ports(),
    Sockets = sockets(),
    #{n := Walked, seen := Seen, types := Types, vanished := Vanished, stopped := Stopped} =
        walk(All ++ Sockets, Kind, Deadline, #{n => 0, seen => [], types => #{}, vanished => 0}),
    Key = fun(E) -> sort_key(Sort, E) end,
    Top = lists:sublist(lists:sort(fun(A, B) -> Key(A) =< Key(B) end, Seen), Limit),
    {Listed, Gone, Late} = details(Top, Deadline, [], 0),
    {ok, #{ports => Listed,
           total => length(All) + length(Sockets),
           walked => Walked,
           vanished => Vanished + Gone,
           truncated => Stopped orelse Late,
           by_type => Types}}.

%% The details of the chosen ones, until the deadline (the rest left out).
details([], _Deadline, Acc, Gone) ->
    {lists:reverse(Acc), Gone, false};
details([E | Es], Deadline, Acc, Gone) ->
    case erlang:monotonic_time(millisecond) >= Deadline of
        true ->
            {lists:reverse(Acc), Gone, true};
        false ->
            case detail(E) of
                vanished -> details(Es, Deadline, Acc, Gone + 1);
                D -> details(Es, Deadline, [D | Acc], Gone)
            end
    end.

%% Largest first; ties (and sort_by id) in the order the VM lists them.
sort_key(id, #{n := N}) -> N;
sort_key(Sort, #{n := N} = E) -> {-maps:get(Sort, E), N}.

%% socket:which_sockets/0 only when the socket module is loaded already (no
%% socket can exist otherwise), asked in a helper: it calls the registry.
sockets() ->
    case erlang:module_loaded(socket)
        andalso erlang:function_exported(socket, which_sockets, 0) of
        true ->
            case beamside_ops:bounded(fun() -> socket:which_sockets() end, ?SOCKETS_MS, []) of
                {ok, L} when is_list(L) -> L;
                _ -> []
            end;
        false ->
            []
    end.

%%% ---------------------------------------------------------------------------
%%% the walk: kind, type and the sort values of every port and socket

walk([], _Kind, _Deadline, W) ->
    W#{stopped => false};
walk([P | Ps], Kind, Deadline, #{n := N, seen := Seen, types := Types} = W) ->
    case N rem 100 =:= 0 andalso erlang:monotonic_time(millisecond) >= Deadline of
        true ->
            W#{stopped => true};
        false ->
            case base(P, N) of
                vanished ->
                    walk(Ps, Kind, Deadline, W#{vanished := maps:get(vanished, W) + 1});
                #{kind := K, type := T} = E ->
                    Seen1 = case Kind =:= all orelse Kind =:= K of
                                true -> [E | Seen];
                                false -> Seen
                            end,
                    walk(Ps, Kind, Deadline, W#{n := N + 1, seen := Seen1,
                                                types := count_type(T, Types)})
            end
    end.

count_type(T, Types) ->
    Key = case maps:is_key(T, Types) orelse map_size(Types) < ?MAX_TYPES of
              true -> T;
              false -> <<"other">>
          end,
    Types#{Key => maps:get(Key, Types, 0) + 1}.

base(P, N) when is_port(P) ->
    case {erlang:port_info(P, name), erlang:port_info(P, os_pid)} of
        {{name, Name}, {os_pid, OsPid}} ->
            Driver = beamside_ops:truncate(beamside_ops:bin(Name), ?DRIVER_BYTES),
            {Kind, Type} = port_kind(Driver, OsPid),
            E = #{n => N, ref => P, kind => Kind, type => Type, driver => Driver,
                  os_pid => case OsPid of I when is_integer(I) -> I; _ -> -1 end,
                  queue_size => port_int(P, queue_size), memory => port_int(P, memory)},
            case inet_kind(Kind) of
                true ->
                    {In, Out} = inet_bytes(P),
                    E#{input => In, output => Out};
                false ->
                    E#{input => port_int(P, input), output => port_int(P, output)}
            end;
        _ ->
            vanished
    end;
base(S, N) ->
    try socket:info(S) of
        #{} = Info ->
            C = maps:get(counters, Info, #{}),
            #{n => N, ref => S, kind => <<"socket">>, type => <<"socket">>,
              driver => <<"socket">>, os_pid => -1, queue_size => 0, memory => 0,
              input => count(read_byte, C), output => count(write_byte, C), info => Info};
        _ ->
            vanished
    catch _:_ ->
            vanished
    end.

port_kind(_, OsPid) when is_integer(OsPid) -> {<<"spawn">>, <<"spawn">>};
port_kind(<<"tcp_inet">> = D, _) -> {<<"tcp">>, D};
port_kind(<<"udp_inet">> = D, _) -> {<<"udp">>, D};
port_kind(<<"sctp_inet">> = D, _) -> {<<"sctp">>, D};
port_kind(<<"efile">> = D, _) -> {<<"file">>, D};
port_kind(D, _) ->
    case binary:split(D, <<"/">>) of
        [In, Out] when In =/= <<>>, Out =/= <<>> ->
            case digits(In) andalso digits(Out) of
                true -> {<<"fd">>, <<"fd">>};
                false -> {<<"driver">>, D}
            end;
        _ ->
            {<<"driver">>, D}
    end.

digits(B) -> lists:all(fun(C) -> C >= $0 andalso C =< $9 end, binary_to_list(B)).

inet_kind(K) -> K =:= <<"tcp">> orelse K =:= <<"udp">> orelse K =:= <<"sctp">>.

inet_bytes(P) ->
    case inet_call(fun() -> prim_inet:getstat(P, [recv_oct, send_oct]) end) of
        {ok, Stats} when is_list(Stats) ->
            {count(recv_oct, Stats), count(send_oct, Stats)};
        _ ->
            {0, 0}
    end.

count(Key, Map) when is_map(Map) ->
    case maps:get(Key, Map, 0) of V when is_integer(V) -> V; _ -> 0 end;
count(Key, List) ->
    case lists:keyfind(Key, 1, List) of {Key, V} when is_integer(V) -> V; _ -> 0 end.

port_int(P, Item) ->
    case erlang:port_info(P, Item) of
        {Item, V} when is_integer(V) -> V;
        _ -> 0
    end.

%% A port closed under us makes prim_inet answer an error or raise badarg.
inet_call(Fun) ->
    try Fun() catch _:_ -> {error, closed} end.

%%% ---------------------------------------------------------------------------
%%% the listed entries: addresses, state, owner, options

detail(#{ref := P, kind := Kind} = E) when is_port(P) ->
    case erlang:port_info(P, connected) of
        {connected, Owner} ->
            Inet = case inet_kind(Kind) of
                       true -> inet_detail(P, Kind);
                       false -> #{local => <<>>, remote => <<>>, state => <<>>, options => #{}}
                   end,
            entry(E, maps:merge(Inet, owner(Owner)));
        undefined ->
            vanished
    end;
detail(#{ref := S, info := Info} = E) ->
    Local = case inet_call(fun() -> socket:sockname(S) end) of
                {ok, A} -> address(A);
                _ -> <<>>
            end,
    Remote = case inet_call(fun() -> socket:peername(S) end) of
                 {ok, R} -> address(R);
                 _ -> <<>>
             end,
    States = [St || St <- maps:get(rstates, Info, []) ++ maps:get(wstates, Info, []),
                    is_atom(St)],
    Opts = maps:from_list([{atom_to_binary(K, utf8), beamside_ops:text(V, #{chars => 64})}
                           || K <- [domain, type, protocol, ctype],
                              V <- [maps:get(K, Info, undefined)], V =/= undefined]),
    entry(E, maps:merge(#{local => Local, remote => Remote, state => join(States),
                          options => Opts},
                        owner(maps:get(owner, Info, undefined)))).

entry(E, Detail) ->
    Base = maps:with([kind, driver, input, output, queue_size, memory, os_pid], E),
    maps:merge(Base#{id => id_text(maps:get(ref, E))}, Detail).

id_text(P) when is_port(P) ->
    pid_text(P);
id_text(S) ->
    try socket:to_list(S) of
        L when is_list(L) -> list_to_binary(L)
    catch _:_ -> beamside_ops:text(S, #{chars => 100})
    end.

-define(TCP_OPTS, [active, packet, nodelay, keepalive, buffer, recbuf, sndbuf,
                   high_watermark, low_watermark, send_timeout]).
-define(UDP_OPTS, [active, buffer, recbuf, sndbuf, broadcast]).

inet_detail(P, Kind) ->
    Local = case inet_call(fun() -> prim_inet:sockname(P) end) of
                {ok, L} -> address(L);
                _ -> <<>>
            end,
    Remote = case inet_call(fun() -> prim_inet:peername(P) end) of
                 {ok, R} -> address(R);
                 _ -> <<>>
             end,
    State = case inet_call(fun() -> prim_inet:getstatus(P) end) of
                {ok, Flags} when is_list(Flags) ->
                    join(case Flags -- [open] of [] -> Flags; Rest -> Rest end);
                _ ->
                    <<>>
            end,
    Names = case Kind of <<"tcp">> -> ?TCP_OPTS; _ -> ?UDP_OPTS end,
    Options = case inet_call(fun() -> prim_inet:getopts(P, Names) end) of
                  {ok, Got} when is_list(Got) ->
                      maps:from_list([{atom_to_binary(K, utf8),
                                       beamside_ops:text(V, #{chars => 64})}
                                      || {K, V} <- Got, is_atom(K)]);
                  _ ->
                      #{}
              end,
    #{local => Local, remote => Remote, state => State, options => Options}.

join(Atoms) ->
    iolist_to_binary(lists:join(<<",">>, [atom_to_binary(A, utf8) || A <- Atoms])).

address({local, Path}) ->
    beamside_ops:bin(Path);
address({IP, Port}) when is_tuple(IP), is_integer(Port) ->
    ip_port(IP, Port);
address(#{family := local, path := Path}) ->
    beamside_ops:text(Path, #{chars => 200});
address(#{addr := IP, port := Port}) when is_tuple(IP), is_integer(Port) ->
    ip_port(IP, Port);
address(Other) ->
    beamside_ops:text(Other, #{chars => 200}).

ip_port(IP, Port) ->
    case inet:ntoa(IP) of
        S when is_list(S), tuple_size(IP) =:= 8 -> iolist_to_binary(["[", S, "]:",
                                                                    integer_to_list(Port)]);
        S when is_list(S) -> iolist_to_binary([S, ":", integer_to_list(Port)]);
        _ -> beamside_ops:text({IP, Port}, #{chars => 200})
    end.

owner(Pid) when is_pid(Pid), node(Pid) =:= node() ->
    case erlang:process_info(Pid, [registered_name, initial_call]) of
        [{registered_name, Name}, {initial_call, IC}] ->
            #{owner_pid => pid_text(Pid),
              owner_name => case Name of [] -> <<>>; _ -> atom_to_binary(Name, utf8) end,
              owner_call => mfa(initial_call(Pid, IC))};
        _ ->
            #{owner_pid => pid_text(Pid), owner_name => <<>>, owner_call => <<>>}
    end;
owner(Pid) when is_pid(Pid) ->
    #{owner_pid => pid_text(Pid), owner_name => <<>>, owner_call => <<>>};
owner(_) ->
    #{owner_pid => <<>>, owner_name => <<>>, owner_call => <<>>}.

%% proc_lib's processes start in proc_lib:init_p/5: the call it was started
%% with is in their dictionary (copied: this runs under a heap limit).
initial_call(Pid, {proc_lib, init_p, 5} = IC) ->
    try proc_lib:translate_initial_call(Pid) of
        {_, _, _} = MFA -> MFA;
        _ -> IC
    catch _:_ -> IC
    end;
initial_call(_, IC) ->
    IC.

mfa({M, F, A}) when is_atom(M), is_atom(F), is_integer(A) ->
    iolist_to_binary([atom_to_binary(M, utf8), ":", atom_to_binary(F, utf8), "/",
                      integer_to_list(A)]);
mfa(Other) ->
    beamside_ops:text(Other, #{chars => 100}).
