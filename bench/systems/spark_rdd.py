"""PySpark local[2], RDD API: textFile -> flatMap(split) -> reduceByKey.

    spark_rdd.py INPUT OUT_DIR      writes OUT_DIR/part-* (word<TAB>count)
"""
import sys

from pyspark import SparkConf, SparkContext

conf = SparkConf().setMaster("local[2]").setAppName("wc-rdd").set("spark.ui.enabled", "false")
sc = SparkContext(conf=conf)
sc.setLogLevel("ERROR")
(
    sc.textFile(sys.argv[1])
    .flatMap(lambda line: line.split())
    .map(lambda w: (w, 1))
    .reduceByKey(lambda a, b: a + b)
    .map(lambda wc: "%s\t%d" % wc)
    .saveAsTextFile(sys.argv[2])
)
sc.stop()
