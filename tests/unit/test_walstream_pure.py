"""The WAL streamer's pure parts: its argv, the slot row parser, the metrics it serves."""
from iosops.backup.walstream import GAP_WORDS, Gauges, parse_slot_row
from iosops.commands import pg


def test_receivewal_argv_streams_on_the_slot_without_looping_and_reports_every_second():
    argv = pg.receivewal("/b", "postgres", 5432, "iosops_backup", "/spool", "iosops")
    assert argv == ["/b/pg_receivewal", "-h", "postgres", "-p", "5432", "-U", "iosops_backup", "--no-password",
                    "-D", "/spool", "--slot", "iosops", "--no-loop", "--status-interval", "1"]
    assert pg.receivewal_create_slot("/b", "h", 1, "u", "s")[-3:] == ["s", "--create-slot", "--if-not-exists"]
    assert pg.receivewal_drop_slot("/b", "h", 1, "u", "s")[-2:] == ["s", "--drop-slot"]


def test_slot_row_parses_psql_output_and_a_missing_slot_is_none():
    assert parse_slot_row("1|16384|2147483648|reserved\n") == (1, 16384, 2147483648, "reserved")
    assert parse_slot_row("0|0|-1|lost") == (0, 0, -1, "lost")
    assert parse_slot_row("") is None


def test_gauges_render_every_metric_with_env_and_slot_and_append_textfiles(tmp_path):
    (tmp_path / "iosops_backup.prom").write_text('iosops_backup_last_run_success{component="postgres",env="prod"} 1\n')
    g = Gauges("prod", "iosops", up=1, slot_active=1, slot_lag_bytes=42, gaps=2, extra_dirs=[tmp_path])
    text = g.render()
    for line in ('iosops_walstream_up{env="prod"} 1', 'iosops_walstream_slot_active{env="prod",slot="iosops"} 1',
                 'iosops_walstream_slot_lag_bytes{env="prod",slot="iosops"} 42', 'iosops_walstream_gaps_total{env="prod"} 2',
                 'iosops_backup_last_run_success{component="postgres",env="prod"} 1'):
        assert line in text.splitlines(), line


def test_gap_words_match_what_pg_receivewal_says_when_the_wal_is_gone():
    said = ('pg_receivewal: error: could not send replication command "START_REPLICATION": ERROR:  requested WAL '
            'segment 000000010000000000000005 has already been removed')
    assert any(w in said for w in GAP_WORDS)
