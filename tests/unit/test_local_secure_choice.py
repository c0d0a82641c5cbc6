"""Whether `scalebox local up` secures the local pair: by default yes, unless the home opted out or its
services run without authentication now (they are not restarted behind the user's back)."""

import pytest

from scalebox_stream.local.services import LocalServiceError, secure_choice


def test_a_fresh_or_stopped_home_is_secured_by_default() -> None:
    assert secure_choice(None, said_insecure=False, running_insecure=[]) is True


def test_a_home_that_said_insecure_stays_so_until_told_otherwise() -> None:
    assert secure_choice(None, said_insecure=True, running_insecure=[]) is False
    assert secure_choice(True, said_insecure=True, running_insecure=[]) is True
    assert secure_choice(False, said_insecure=False, running_insecure=[]) is False


def test_services_running_without_authentication_keep_running_so_unless_secure_is_asked() -> None:
    assert secure_choice(None, said_insecure=False, running_insecure=["PostgreSQL"]) is False
    assert secure_choice(False, said_insecure=False, running_insecure=["Kafka"]) is False
    with pytest.raises(LocalServiceError, match=r"Kafka and PostgreSQL run\(s\) without authentication: "
                                                r"`scalebox local down` first"):
        secure_choice(True, said_insecure=False, running_insecure=["Kafka", "PostgreSQL"])
