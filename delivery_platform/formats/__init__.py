"""Writers for the bytes vendors receive.

The data path is the same for every text format: SQL builds each output line (quoting,
delimiter, line ending, JSON) in DuckDB, Arrow streams the lines in batches, and `PartWriter`
copies each batch's UTF-8 buffer straight to disk (no Python object per row), cutting parts
at line boundaries by size, optionally through a parallel gzip.
"""

from .compress import ParallelGzip, gzip_file, zip_file
from ..core.sql import quote_ident
from .lines import csv_header, csv_line_sql, json_line_sql
from .parts import Part, PartWriter, stream_line_batches, write_lines

__all__ = [
    "ParallelGzip",
    "Part",
    "PartWriter",
    "csv_header",
    "csv_line_sql",
    "gzip_file",
    "json_line_sql",
    "quote_ident",
    "stream_line_batches",
    "write_lines",
    "zip_file",
]
