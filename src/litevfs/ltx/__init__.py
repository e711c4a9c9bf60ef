"""The LTX file format: constants, decoding, encoding and ranged index reads."""

from .decoder import DecodedFile, FileDecoder, decode_file, locate_index
from .encoder import encode_file
from .format import ENCODING_BLOCK, ENCODING_FRAME, FileInfo, Header, Trailer

__all__ = [
    "DecodedFile", "FileDecoder", "decode_file", "locate_index", "encode_file",
    "ENCODING_BLOCK", "ENCODING_FRAME", "FileInfo", "Header", "Trailer",
]
