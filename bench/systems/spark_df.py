"""PySpark local[2], DataFrame API: split on Python's whitespace set,
explode, groupBy().count().

    spark_df.py INPUT OUT_DIR      writes OUT_DIR/part-* (word<TAB>count)
"""
import sys

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

# Python's str.isspace() set, as a Java regex class.
WS = "[\\t\\n\\x0B\\f\\r\\x1C-\\x20\\u0085\\u00A0\\u1680\\u2000-\\u200A\\u2028\\u2029\\u202F\\u205F\\u3000]+"

spark = (
    SparkSession.builder.master("local[2]").appName("wc-df").config("spark.ui.enabled", "false").getOrCreate()
)
spark.sparkContext.setLogLevel("ERROR")
words = spark.read.text(sys.argv[1]).select(F.explode(F.split("value", WS)).alias("w")).where(F.col("w") != "")
counts = words.groupBy("w").count()
counts.select(F.concat_ws("\t", "w", F.col("count").cast("string"))).write.text(sys.argv[2])
spark.stop()
