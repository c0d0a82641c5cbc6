"""A PostgreSQL made with trust (before the secure default) asks for passwords after its upgrade."""

from scalebox_stream.local.postgres import hba_with_passwords

HBA = """# TYPE  DATABASE  USER  ADDRESS  METHOD
# "trust" below means no password
local   all       all             trust
host    all       all   127.0.0.1/32  trust
host    replication all ::1/128     trust  # ipv6
host    all       all   10.0.0.0/8    reject
"""


def test_every_trust_rule_asks_for_a_scram_password_and_nothing_else_changes() -> None:
    upgraded = hba_with_passwords(HBA).splitlines()
    assert upgraded[:2] == HBA.splitlines()[:2]  # comments stay as they are
    assert upgraded[2] == "local   all       all             scram-sha-256"
    assert upgraded[3] == "host    all       all   127.0.0.1/32  scram-sha-256"
    assert upgraded[4] == "host    replication all ::1/128     scram-sha-256  # ipv6"
    assert upgraded[5] == HBA.splitlines()[5]
    assert hba_with_passwords(HBA).endswith("\n")
