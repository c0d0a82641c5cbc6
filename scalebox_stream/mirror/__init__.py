"""Cross-cluster pipelines over Kafka MirrorMaker 2: which topics flow where (`flows`), the MirrorMaker 2
configuration that makes them flow (`properties`), and running it (`runner`)."""
