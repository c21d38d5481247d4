%%% ===========================================================================
%%% beamside_alarm_handler -- forwards SASL alarm_handler alarms to beamside.
%%% ===========================================================================
%%%
%%% A gen_event handler that beamside_sysmon adds to SASL's `alarm_handler'
%%% event manager as a plain handler (gen_event:add_handler/3 semantics, NOT
%%% a supervised one: a supervised handler links the manager to
%%% beamside_sysmon, and gen_event hands the exit of a linked process to the
%%% handle_info/2 of every handler of the manager, the user's and the
%%% application's included), with the handler id
%%% {beamside_alarm_handler, Ref} (Ref: one per installation).
%%% beamside_sysmon deletes it in its terminate/2; if beamside_sysmon is
%%% killed, this handler removes itself at its next event (its table is
%%% gone) and beamside_watchdog deletes it.  When it is removed while its
%%% installation is the current one (deleted by somebody else, or crashed),
%%% terminate/2 marks it `removed' in the table and the next collect adds it
%%% again.  It keeps the
%%% alarms currently set in beamside_sysmon's ETS table, one row per alarm id
%%% (the table is protected: the handler sends each row to beamside_sysmon,
%%% {beamside_alarm_handler, Ref, {insert, Row} | {delete, Id} | removed},
%%% which stores it while Ref is the installation it made last):
%%%
%%%   {{sasl_alarm, Id}, IdText, DescriptionText, NameText, SetAtMs}
%%%
%%% printed once, when the alarm is set (`~0tP' with depth 20, at most 512
%%% bytes each, secrets redacted by beamside_redact), so that a snapshot reads the table and never calls into
%%% alarm_handler.  set_alarm of an id already set replaces it (alarm_handler
%%% itself would keep both: we keep one row per id).
%%%
%%% Seeding: alarms set before the handler was added are read afterwards by
%%% beamside_sysmon with alarm_handler:get_alarms() and handed to the handler
%%% with a {seed, Alarms} call.  Events that reached the handler between its
%%% installation and the seed win over the seed for their ids (the last
%%% event about an id decides), so no set or clear is lost in between.
%%%
%%% Stale instances: an instance whose Ref is no longer the one
%%% beamside_sysmon installed last (a late answer to an installation that
%%% timed out) removes itself at the next event.  If the table is gone
%%% (beamside_sysmon exited without deleting us) the handler removes itself
%%% too.
%%%
%%% Cost: per alarm event, one message to beamside_sysmon (one ETS write
%%% there) and, on set, printing the alarm (bounded); nothing at all between
%%% events.
%%% ===========================================================================
-module(beamside_alarm_handler).
-behaviour(gen_event).

-export([init/1, handle_event/2, handle_call/2, handle_info/2, terminate/2]).
-export([print/1]).

-define(MAX_TEXT, 512).
-define(MAX_TOUCHED, 1000).

-record(h, {tab :: ets:tab(),
            ref :: reference(),
            seeded = false :: boolean(),
            touched = #{} :: #{term() => true}}).

init({Tab, Ref}) ->
    {ok, #h{tab = Tab, ref = Ref}}.

handle_event(Event, #h{tab = Tab, ref = Ref} = H) ->
    case current(Tab, Ref) of
        true ->
            try {ok, event(Event, H)}
            catch error:badarg -> remove_handler         % beamside_sysmon gone
            end;
        false ->
            remove_handler
    end.

handle_call({seed, Alarms}, #h{touched = Touched} = H) ->
    Now = erlang:system_time(millisecond),
    Seeded = lists:foldl(
               fun(Alarm, N) ->
                       {Id, Desc} = split(Alarm),
                       case maps:is_key(Id, Touched) of
                           true -> N;
                           false -> _ = (catch insert(H, Id, Desc, Now)), N + 1
                       end
               end, 0, Alarms),
    {ok, {ok, Seeded}, H#h{seeded = true, touched = #{}}};
handle_call(_Query, H) ->
    {ok, {error, bad_query}, H}.

handle_info(_Info, H) ->
    {ok, H}.

terminate(_Reason, #h{tab = Tab, ref = Ref} = H) ->
    case current(Tab, Ref) of
        true -> catch send(H, removed);
        false -> ok
    end,
    ok.

%%% ---------------------------------------------------------------------------

event({set_alarm, Alarm}, H) ->
    {Id, Desc} = split(Alarm),
    insert(H, Id, Desc, erlang:system_time(millisecond)),
    touch(Id, H);
event({clear_alarm, Id}, H) ->
    send(H, {delete, Id}),
    touch(Id, H);
event(_Other, H) ->
    H.

touch(_Id, #h{seeded = true} = H) -> H;
touch(Id, #h{touched = T} = H) when map_size(T) < ?MAX_TOUCHED -> H#h{touched = T#{Id => true}};
touch(_Id, H) -> H.

split({Id, Desc}) -> {Id, Desc};
split(Other) -> {Other, []}.

insert(H, Id, Desc, Now) ->
    send(H, {insert, {{sasl_alarm, Id}, print(Id), print(Desc), name(Id), Now}}).

%% To beamside_sysmon (registered under the table's name), which stores it;
%% badarg when it is gone.
send(#h{tab = Owner, ref = Ref}, Op) ->
    Owner ! {?MODULE, Ref, Op},
    ok.

%% Whether this instance is the one beamside_sysmon installed last.
current(Tab, Ref) ->
    try ets:lookup_element(Tab, alarm_handler, 3) =:= Ref
    catch error:badarg -> false
    end.

%% The alarm's kind: the id itself when an atom, else its first element when
%% that is an atom ({disk_almost_full, "/"} -> disk_almost_full).
name(Id) when is_atom(Id) -> atom_to_binary(Id, utf8);
name(Id) when is_tuple(Id), tuple_size(Id) > 0, is_atom(element(1, Id)) ->
    atom_to_binary(element(1, Id), utf8);
name(_) -> <<>>.

%% A term printed on one line, depth 20, at most ?MAX_TEXT bytes, its
%% secrets redacted (beamside_redact).
-spec print(term()) -> binary().
print(T0) ->
    T = beamside_redact:redact(T0),
    Text = try unicode:characters_to_binary(io_lib:format("~0tP", [T, 20])) of
               B when is_binary(B) -> B;
               _ -> iolist_to_binary(io_lib:format("~0P", [T, 20]))
           catch _:_ -> iolist_to_binary(io_lib:format("~0P", [T, 20]))
           end,
    beamside_agent:truncate(Text, ?MAX_TEXT).
