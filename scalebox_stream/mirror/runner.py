"""Run MirrorMaker 2 (dedicated mode) from the jars Maven fetches into `$SCALEBOX_HOME/kafka/mirror-lib`."""

from __future__ import annotations

import subprocess
from pathlib import Path

from scalebox_stream.local import home, kafka

MIRROR_POM = Path(kafka.__file__).with_name("maven") / "mirror-pom.xml"
MAIN_CLASS = "org.apache.kafka.connect.mirror.MirrorMaker"
HEAP = "-Xmx512m"
LOG4J2 = """\
status = warn
appender.file.type = File
appender.file.name = file
appender.file.fileName = {log}
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = file
logger.reflections.name = org.reflections
logger.reflections.level = ERROR
"""


def mirror_lib() -> Path:
    """MirrorMaker 2's jars (fetched with Maven from `mirror-pom.xml` on first use)."""
    return kafka.ensure_jars(kafka.kafka_dir() / "mirror-lib", MIRROR_POM, "connect-mirror-*.jar")


def command(properties: Path, log: Path) -> list[str]:
    """The java command line that runs MirrorMaker 2 on `properties`, logging to `log`."""
    java = kafka.find_java()
    if java is None:
        raise home.MissingPrerequisite(f"java not found.\nInstall with: {kafka.INSTALL_HINT}")
    log4j = log.with_suffix(".log4j2.properties")
    log4j.write_text(LOG4J2.format(log=log))
    return [java, HEAP, f"-Dlog4j2.configurationFile={log4j}", "-cp", f"{mirror_lib()}/*", MAIN_CLASS,
            str(properties)]


def start(properties: Path, log: Path) -> subprocess.Popen:
    """Start MirrorMaker 2 as a child process (stop it with SIGTERM)."""
    return subprocess.Popen(command(properties, log), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=log.with_suffix(".stderr").open("w"))
