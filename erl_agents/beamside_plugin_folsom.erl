%%% ===========================================================================
%%% beamside_plugin_folsom -- every folsom metric of the node.
%%% ===========================================================================
%%%
%%% Applies when the folsom application runs.  Runs in a process bounded by
%%% plugin_timeout_ms (see beamside_plugin).  folsom keeps its metrics in
%%% public ETS tables: reading them calls no process.
%%%
%%%   version          folsom's application version (binary)
%%%   metrics          [#{name, type, ...}] for at most max_metrics (500)
%%%                    metrics, in folsom's order:
%%%                      name     the metric's name as printed (an atom or a
%%%                               binary as it is, any other term ~0tp),
%%%                               bounded to 200 bytes
%%%                      type     counter | gauge | meter | spiral |
%%%                               histogram | duration | history |
%%%                               meter_reader | other
%%%                    and, by type:
%%%                      counter, gauge   value (a number; absent otherwise)
%%%                      meter            count, one, five, fifteen, mean
%%%                                       (events, then events per second
%%%                                       over 1, 5, 15 minutes and since
%%%                                       it was made)
%%%                      spiral           count, one (events in the last
%%%                                       minute)
%%%                      histogram,
%%%                      duration         n (samples), min, max,
%%%                                       arithmetic_mean, percentile
%%%                                       (#{50 | 75 | 90 | 95 | 99 | 999 =>
%%%                                       value}); duration also count
%%%                      history, meter_reader, other: nothing more
%%%   metrics_truncated  true when the node has more than max_metrics
%%%   stats_skipped    histograms and durations past max_histograms (100),
%%%                    or past half of plugin_timeout_ms, reported without
%%%                    their statistics (each costs a sort of its samples)
%%%
%%% Cost: ETS reads; per histogram or duration bear's statistics over its
%%% reservoir (1028 samples by default).
%%% ===========================================================================
-module(beamside_plugin_folsom).
-behaviour(beamside_plugin).

-export([name/0, applies/1, collect/1]).

-define(NAME_BYTES, 200).

-spec name() -> atom().
name() -> folsom.

-spec applies([atom()]) -> boolean().
applies(Apps) -> lists:member(folsom, Apps).

-spec collect(map()) -> map().
collect(Opts) ->
    Max = beamside_agent:int_opt(max_metrics, Opts, 500, {0, 100000}),
    MaxStats = beamside_agent:int_opt(max_histograms, Opts, 100, {0, 100000}),
    Deadline = beamside_plugin:deadline(Opts),
    Names = folsom_metrics:get_metrics(),
    {Metrics, Skipped} = metrics(lists:sublist(Names, Max), {MaxStats, Deadline}, [], 0),
    Base = #{metrics => Metrics,
             metrics_truncated => length(Names) > Max,
             stats_skipped => Skipped},
    beamside_plugin:with_version(folsom, Base).

metrics([], _Limits, Acc, Skipped) ->
    {lists:reverse(Acc), Skipped};
metrics([Name | Rest], {Left, Deadline} = Limits, Acc, Skipped) ->
    Type = type_of(Name),
    Base = #{name => printed(Name), type => Type},
    case Type of
        T when T =:= histogram; T =:= duration ->
            case Left > 0 andalso erlang:monotonic_time(millisecond) < Deadline of
                true ->
                    M = beamside_agent:safe(fun() -> stats(T, Name, Base) end),
                    metrics(Rest, {Left - 1, Deadline}, [ok_or(M, Base) | Acc], Skipped);
                false ->
                    metrics(Rest, Limits, [Base | Acc], Skipped + 1)
            end;
        _ ->
            M = beamside_agent:safe(fun() -> values(Type, Name, Base) end),
            metrics(Rest, Limits, [ok_or(M, Base) | Acc], Skipped)
    end.

ok_or({error, _}, Base) -> Base;
ok_or(M, _Base) -> M.

type_of(Name) ->
    case catch folsom_metrics:get_metric_info(Name) of
        [{_, Info}] when is_list(Info) ->
            case proplists:get_value(type, Info) of
                T when T =:= counter; T =:= gauge; T =:= meter; T =:= spiral;
                       T =:= histogram; T =:= duration; T =:= history;
                       T =:= meter_reader -> T;
                _ -> other
            end;
        _ ->
            other
    end.

values(T, Name, Base) when T =:= counter; T =:= gauge ->
    case folsom_metrics:get_metric_value(Name) of
        V when is_number(V) -> Base#{value => V};
        _ -> Base
    end;
values(meter, Name, Base) ->
    pick(folsom_metrics:get_metric_value(Name), [count, one, five, fifteen, mean], Base);
values(spiral, Name, Base) ->
    pick(folsom_metrics:get_metric_value(Name), [count, one], Base);
values(_, _Name, Base) ->
    Base.

stats(histogram, Name, Base) ->
    stats_of(folsom_metrics:get_histogram_statistics(Name), Base);
stats(duration, Name, Base) ->
    Values = folsom_metrics:get_metric_value(Name),
    stats_of(Values, pick(Values, [count], Base)).

stats_of(Stats, Base) ->
    M = pick(Stats, [n, min, max, arithmetic_mean], Base),
    case proplists:get_value(percentile, Stats) of
        Ps when is_list(Ps) ->
            M#{percentile => maps:from_list([{P, V} || {P, V} <- Ps,
                                                      is_integer(P), is_number(V)])};
        _ ->
            M
    end.

pick(Props, Keys, Base) when is_list(Props) ->
    lists:foldl(fun(K, Acc) ->
                        case proplists:get_value(K, Props) of
                            V when is_number(V) -> Acc#{K => V};
                            _ -> Acc
                        end
                end, Base, Keys);
pick(_, _Keys, Base) ->
    Base.

printed(Name) -> beamside_plugin:printed(Name, ?NAME_BYTES).
