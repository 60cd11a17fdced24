"""`none`: the identity compressor; with it, a compressed exchange equals plain all-reduce."""
from . import compressor
from .base import Base


@compressor("none")
class NoCompression(Base):
    allreduce = True
    identity = True  # strategies skip compression machinery altogether (plain buckets, no codec)

    def compress(self, tensor, name):
        return [tensor], None

    def decompress(self, payload, ctx):
        return payload[0]
