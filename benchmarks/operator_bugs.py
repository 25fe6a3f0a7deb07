"""Single-operator bugs in small functions, with tests: the data of benchmarks/self_improvement.py.

Each function below is correct and has asserts. A bug is the function with one operator
swapped for a plausible wrong one (`+` for `-`, `<` for `<=`, `and` for `or`, ...), found
with `ast` and written back with `ast.unparse`; a mutant that the tests do not catch is
dropped. The tasks are written in QuixBugs' JSONL format (name, buggy_program, docstring,
solution, tests), so `selfrepair improve --format quixbugs` reads them. Train and eval are
split by function: no function has bugs on both sides.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import tempfile
from pathlib import Path

# name -> (docstring, correct code, tests)
FUNCTIONS: dict[str, tuple[str, str, str]] = {
    "add": (
        "Return the sum of a and b.",
        "def add(a, b):\n    return a + b\n",
        "assert add(1, 2) == 3\nassert add(-4, 1) == -3\n",
    ),
    "subtract": (
        "Return a minus b.",
        "def subtract(a, b):\n    return a - b\n",
        "assert subtract(5, 2) == 3\nassert subtract(2, 5) == -3\n",
    ),
    "area": (
        "Return the area of a w by h rectangle.",
        "def area(w, h):\n    return w * h\n",
        "assert area(3, 4) == 12\nassert area(2, 5) == 10\n",
    ),
    "average": (
        "Return the mean of two numbers.",
        "def average(a, b):\n    return (a + b) / 2\n",
        "assert average(2, 4) == 3\nassert average(1, 2) == 1.5\n",
    ),
    "is_even": (
        "Return True when n is even.",
        "def is_even(n):\n    return n % 2 == 0\n",
        "assert is_even(4)\nassert not is_even(7)\nassert is_even(0)\n",
    ),
    "is_positive": (
        "Return True when x is greater than zero.",
        "def is_positive(x):\n    return x > 0\n",
        "assert is_positive(3)\nassert not is_positive(0)\nassert not is_positive(-2)\n",
    ),
    "maximum": (
        "Return the larger of a and b.",
        "def maximum(a, b):\n    if a > b:\n        return a\n    return b\n",
        "assert maximum(3, 7) == 7\nassert maximum(9, 2) == 9\n",
    ),
    "minimum": (
        "Return the smaller of a and b.",
        "def minimum(a, b):\n    if a < b:\n        return a\n    return b\n",
        "assert minimum(3, 7) == 3\nassert minimum(9, 2) == 2\n",
    ),
    "square": (
        "Return x squared.",
        "def square(x):\n    return x * x\n",
        "assert square(3) == 9\nassert square(-4) == 16\nassert square(1) == 1\n",
    ),
    "cube": (
        "Return x cubed.",
        "def cube(x):\n    return x ** 3\n",
        "assert cube(2) == 8\nassert cube(3) == 27\n",
    ),
    "in_range": (
        "Return True when lo <= x < hi.",
        "def in_range(x, lo, hi):\n    return lo <= x and x < hi\n",
        "assert in_range(3, 1, 5)\nassert in_range(1, 1, 5)\nassert not in_range(5, 1, 5)\nassert not in_range(0, 1, 5)\n",
    ),
    "total": (
        "Return the sum of a list of numbers.",
        "def total(xs):\n    s = 0\n    for x in xs:\n        s = s + x\n    return s\n",
        "assert total([1, 2, 3]) == 6\nassert total([]) == 0\nassert total([5]) == 5\n",
    ),
    "count_positive": (
        "Return how many numbers in xs are greater than zero.",
        "def count_positive(xs):\n    n = 0\n    for x in xs:\n        if x > 0:\n            n = n + 1\n    return n\n",
        "assert count_positive([1, -2, 3, 0]) == 2\nassert count_positive([]) == 0\n",
    ),
    "factorial": (
        "Return n factorial.",
        "def factorial(n):\n    result = 1\n    for i in range(2, n + 1):\n        result = result * i\n    return result\n",
        "assert factorial(0) == 1\nassert factorial(4) == 24\nassert factorial(5) == 120\n",
    ),
    "celsius": (
        "Convert a temperature in Fahrenheit to Celsius.",
        "def celsius(f):\n    return (f - 32) * 5 / 9\n",
        "assert celsius(212) == 100\nassert celsius(32) == 0\n",
    ),
    "last_index": (
        "Return the last valid index of a list.",
        "def last_index(xs):\n    return len(xs) - 1\n",
        "assert last_index([1, 2, 3]) == 2\nassert last_index([7]) == 0\n",
    ),
    "both_true": (
        "Return True when a and b are both true.",
        "def both_true(a, b):\n    return a and b\n",
        "assert both_true(True, True)\nassert not both_true(True, False)\nassert not both_true(False, True)\n",
    ),
    "either_true": (
        "Return True when a or b is true.",
        "def either_true(a, b):\n    return a or b\n",
        "assert either_true(True, False)\nassert either_true(False, True)\nassert not either_true(False, False)\n",
    ),
    "is_adult": (
        "Return True when age is 18 or more.",
        "def is_adult(age):\n    return age >= 18\n",
        "assert is_adult(18)\nassert is_adult(30)\nassert not is_adult(17)\n",
    ),
    "same": (
        "Return True when a equals b.",
        "def same(a, b):\n    return a == b\n",
        "assert same(2, 2)\nassert not same(2, 3)\n",
    ),
    "remainder": (
        "Return the remainder of a divided by b.",
        "def remainder(a, b):\n    return a % b\n",
        "assert remainder(7, 3) == 1\nassert remainder(9, 3) == 0\nassert remainder(10, 4) == 2\n",
    ),
    "halve": (
        "Return n divided by 2, rounded down.",
        "def halve(n):\n    return n // 2\n",
        "assert halve(7) == 3\nassert halve(8) == 4\n",
    ),
    "perimeter": (
        "Return the perimeter of a w by h rectangle.",
        "def perimeter(w, h):\n    return 2 * (w + h)\n",
        "assert perimeter(3, 4) == 14\nassert perimeter(1, 1) == 4\n",
    ),
    "difference": (
        "Return the absolute difference of a and b.",
        "def difference(a, b):\n    if a > b:\n        return a - b\n    return b - a\n",
        "assert difference(7, 3) == 4\nassert difference(3, 7) == 4\n",
    ),
    "triangle_area": (
        "Return the area of a triangle with the given base and height.",
        "def triangle_area(base, height):\n    return base * height / 2\n",
        "assert triangle_area(6, 4) == 12\nassert triangle_area(3, 5) == 7.5\n",
    ),
    "box_volume": (
        "Return the volume of a box with the given length, width and height.",
        "def box_volume(length, width, height):\n    return length * width * height\n",
        "assert box_volume(2, 3, 4) == 24\nassert box_volume(1, 5, 2) == 10\n",
    ),
    "triangle_perimeter": (
        "Return the perimeter of a triangle with sides a, b and c.",
        "def triangle_perimeter(a, b, c):\n    return a + b + c\n",
        "assert triangle_perimeter(3, 4, 5) == 12\nassert triangle_perimeter(1, 1, 1) == 3\n",
    ),
    "is_right_triangle": (
        "Return True when a*a + b*b equals c*c.",
        "def is_right_triangle(a, b, c):\n    return a * a + b * b == c * c\n",
        "assert is_right_triangle(3, 4, 5)\nassert is_right_triangle(5, 12, 13)\nassert not is_right_triangle(2, 3, 4)\n",
    ),
    "hypotenuse_squared": (
        "Return a squared plus b squared.",
        "def hypotenuse_squared(a, b):\n    return a ** 2 + b ** 2\n",
        "assert hypotenuse_squared(3, 4) == 25\nassert hypotenuse_squared(1, 2) == 5\n",
    ),
    "is_triangle": (
        "Return True when each pair of sides a, b, c adds up to more than the third side.",
        "def is_triangle(a, b, c):\n    return a + b > c and a + c > b and b + c > a\n",
        "assert is_triangle(3, 4, 5)\nassert not is_triangle(1, 2, 3)\nassert not is_triangle(1, 10, 2)\nassert not is_triangle(10, 1, 2)\n",
    ),
    "square_of_sum": (
        "Return the square of a + b.",
        "def square_of_sum(a, b):\n    return (a + b) ** 2\n",
        "assert square_of_sum(1, 2) == 9\nassert square_of_sum(2, 5) == 49\n",
    ),
    "manhattan_distance": (
        "Return abs(x1 - x2) + abs(y1 - y2), the grid distance between two points.",
        "def manhattan_distance(x1, y1, x2, y2):\n    return abs(x1 - x2) + abs(y1 - y2)\n",
        "assert manhattan_distance(0, 0, 3, 4) == 7\nassert manhattan_distance(1, 5, 4, 1) == 7\nassert manhattan_distance(2, 2, 2, 2) == 0\n",
    ),
    "bigger_area": (
        "Return True when a w1 by h1 rectangle has a strictly larger area than a w2 by h2 rectangle.",
        "def bigger_area(w1, h1, w2, h2):\n    return w1 * h1 > w2 * h2\n",
        "assert bigger_area(3, 4, 2, 5)\nassert not bigger_area(2, 5, 3, 4)\nassert not bigger_area(2, 6, 3, 4)\n",
    ),
    "fits_inside": (
        "Return True when a w by h item fits in a box_w by box_h box (equal sizes fit).",
        "def fits_inside(w, h, box_w, box_h):\n    return w <= box_w and h <= box_h\n",
        "assert fits_inside(4, 3, 4, 3)\nassert not fits_inside(5, 1, 4, 4)\nassert not fits_inside(1, 5, 4, 4)\n",
    ),
    "minutes_to_seconds": (
        "Return the number of seconds in m minutes.",
        "def minutes_to_seconds(m):\n    return m * 60\n",
        "assert minutes_to_seconds(2) == 120\nassert minutes_to_seconds(0) == 0\n",
    ),
    "to_minutes": (
        "Return the total minutes in h hours and m minutes.",
        "def to_minutes(h, m):\n    return h * 60 + m\n",
        "assert to_minutes(2, 15) == 135\nassert to_minutes(0, 45) == 45\n",
    ),
    "next_day": (
        "Return the day after day, where days are numbered 0 to 6 and 6 is followed by 0.",
        "def next_day(day):\n    return (day + 1) % 7\n",
        "assert next_day(3) == 4\nassert next_day(6) == 0\n",
    ),
    "hour_after": (
        "Return the hour on a 24-hour clock (0 to 23) that comes hours hours after hour.",
        "def hour_after(hour, hours):\n    return (hour + hours) % 24\n",
        "assert hour_after(22, 5) == 3\nassert hour_after(10, 3) == 13\n",
    ),
    "to_12_hour": (
        "Convert an hour 0 to 23 to the 12-hour clock, where 0 and 12 both become 12.",
        "def to_12_hour(hour):\n    h = hour % 12\n    if h == 0:\n        return 12\n    return h\n",
        "assert to_12_hour(0) == 12\nassert to_12_hour(13) == 1\nassert to_12_hour(12) == 12\nassert to_12_hour(9) == 9\n",
    ),
    "is_morning": (
        "Return True when hour (0 to 23) is before noon, that is less than 12.",
        "def is_morning(hour):\n    return hour < 12\n",
        "assert is_morning(0)\nassert is_morning(11)\nassert not is_morning(12)\n",
    ),
    "minutes_between": (
        "Return the minutes from time h1:m1 to the later time h2:m2 on the same day.",
        "def minutes_between(h1, m1, h2, m2):\n    return (h2 * 60 + m2) - (h1 * 60 + m1)\n",
        "assert minutes_between(9, 30, 10, 15) == 45\nassert minutes_between(8, 0, 8, 20) == 20\n",
    ),
    "is_weekend": (
        "Return True when day is 6 or 7, with days numbered 1 (Monday) to 7 (Sunday).",
        "def is_weekend(day):\n    return day == 6 or day == 7\n",
        "assert is_weekend(6)\nassert is_weekend(7)\nassert not is_weekend(3)\n",
    ),
    "is_valid_month": (
        "Return True when m is a month number from 1 to 12.",
        "def is_valid_month(m):\n    return 1 <= m <= 12\n",
        "assert is_valid_month(1)\nassert is_valid_month(12)\nassert not is_valid_month(0)\nassert not is_valid_month(13)\n",
    ),
    "quarter_of_month": (
        "Return the quarter (1 to 4) of the year that month m (1 to 12) falls in.",
        "def quarter_of_month(m):\n    return (m - 1) // 3 + 1\n",
        "assert quarter_of_month(1) == 1\nassert quarter_of_month(3) == 1\nassert quarter_of_month(4) == 2\nassert quarter_of_month(12) == 4\n",
    ),
    "century": (
        "Return the century of a year, where years 1 to 100 are century 1 and 1901 to 2000 are century 20.",
        "def century(year):\n    return (year - 1) // 100 + 1\n",
        "assert century(1900) == 19\nassert century(1901) == 20\nassert century(2000) == 20\nassert century(100) == 1\n",
    ),
    "is_leap_year": (
        "Return True when year is divisible by 4 but not by 100, or divisible by 400.",
        "def is_leap_year(year):\n    return year % 4 == 0 and year % 100 != 0 or year % 400 == 0\n",
        "assert is_leap_year(2024)\nassert not is_leap_year(1900)\nassert is_leap_year(2000)\nassert not is_leap_year(2023)\n",
    ),
    "fahrenheit": (
        "Convert a temperature in Celsius to Fahrenheit.",
        "def fahrenheit(c):\n    return c * 9 / 5 + 32\n",
        "assert fahrenheit(100) == 212\nassert fahrenheit(0) == 32\nassert fahrenheit(2.5) == 36.5\n",
    ),
    "is_freezing": (
        "Return True when a Celsius temperature is 0 or below.",
        "def is_freezing(temp):\n    return temp <= 0\n",
        "assert is_freezing(0)\nassert is_freezing(-3)\nassert not is_freezing(5)\n",
    ),
    "is_hot": (
        "Return True when temp is above 30.",
        "def is_hot(temp):\n    return temp > 30\n",
        "assert is_hot(31)\nassert not is_hot(30)\nassert not is_hot(20)\n",
    ),
    "letter_grade": (
        "Return 'A' for a score of 90 or more, 'B' for 80 to 89, and 'C' below 80.",
        "def letter_grade(score):\n    if score >= 90:\n        return 'A'\n    if score >= 80:\n        return 'B'\n    return 'C'\n",
        "assert letter_grade(90) == 'A'\nassert letter_grade(85) == 'B'\nassert letter_grade(80) == 'B'\nassert letter_grade(79) == 'C'\n",
    ),
    "passing_average": (
        "Return True when the mean of scores a, b and c is 60 or more.",
        "def passing_average(a, b, c):\n    return (a + b + c) / 3 >= 60\n",
        "assert passing_average(60, 60, 60)\nassert passing_average(50, 60, 70)\nassert not passing_average(59, 60, 60)\n",
    ),
    "is_teen": (
        "Return True when age is from 13 to 19, both included.",
        "def is_teen(age):\n    return age >= 13 and age <= 19\n",
        "assert is_teen(13)\nassert is_teen(19)\nassert not is_teen(12)\nassert not is_teen(20)\n",
    ),
    "ticket_price": (
        "Return 5 for a child under 12 or a senior aged 65 or more, and 10 for everyone else.",
        "def ticket_price(age):\n    if age < 12 or age >= 65:\n        return 5\n    return 10\n",
        "assert ticket_price(11) == 5\nassert ticket_price(12) == 10\nassert ticket_price(65) == 5\nassert ticket_price(64) == 10\n",
    ),
    "percent": (
        "Return part as a percentage of whole.",
        "def percent(part, whole):\n    return part * 100 / whole\n",
        "assert percent(1, 4) == 25\nassert percent(3, 8) == 37.5\n",
    ),
    "sale_price": (
        "Return price after taking percent_off percent off it.",
        "def sale_price(price, percent_off):\n    return price - price * percent_off / 100\n",
        "assert sale_price(200, 10) == 180\nassert sale_price(50, 50) == 25\nassert sale_price(30, 15) == 25.5\n",
    ),
    "change_due": (
        "Return paid minus cost, or 0 when paid is less than cost.",
        "def change_due(paid, cost):\n    if paid < cost:\n        return 0\n    return paid - cost\n",
        "assert change_due(10, 7) == 3\nassert change_due(5, 8) == 0\nassert change_due(6, 6) == 0\n",
    ),
    "quarters_in": (
        "Return how many whole quarters (25 cents) fit in the given cents.",
        "def quarters_in(cents):\n    return cents // 25\n",
        "assert quarters_in(60) == 2\nassert quarters_in(25) == 1\nassert quarters_in(24) == 0\n",
    ),
    "split_bill": (
        "Return each person's share when total is split evenly among people.",
        "def split_bill(total, people):\n    return total / people\n",
        "assert split_bill(30, 4) == 7.5\nassert split_bill(20, 4) == 5\n",
    ),
    "can_afford": (
        "Return True when money covers qty items at price each (exactly enough counts).",
        "def can_afford(money, price, qty):\n    return money >= price * qty\n",
        "assert can_afford(20, 5, 4)\nassert not can_afford(19, 5, 4)\n",
    ),
    "simple_interest": (
        "Return the interest on principal at rate percent a year for years years: principal * rate * years / 100.",
        "def simple_interest(principal, rate, years):\n    return principal * rate * years / 100\n",
        "assert simple_interest(1000, 5, 2) == 100\nassert simple_interest(150, 3, 1) == 4.5\n",
    ),
    "doubled_amount": (
        "Return principal after it doubles once a year for years years.",
        "def doubled_amount(principal, years):\n    return principal * 2 ** years\n",
        "assert doubled_amount(3, 2) == 12\nassert doubled_amount(5, 0) == 5\nassert doubled_amount(1, 3) == 8\n",
    ),
    "shipping_cost": (
        "Return the shipping cost: 5 for a weight up to 1, plus 2 for each unit of weight above 1.",
        "def shipping_cost(weight):\n    if weight <= 1:\n        return 5\n    return 5 + (weight - 1) * 2\n",
        "assert shipping_cost(1) == 5\nassert shipping_cost(3) == 9\nassert shipping_cost(4) == 11\n",
    ),
    "weekly_pay": (
        "Return pay for hours worked at rate, where hours beyond 40 are paid double.",
        "def weekly_pay(hours, rate):\n    if hours <= 40:\n        return hours * rate\n    return 40 * rate + (hours - 40) * rate * 2\n",
        "assert weekly_pay(10, 20) == 200\nassert weekly_pay(40, 10) == 400\nassert weekly_pay(45, 10) == 500\n",
    ),
    "empty_seats": (
        "Return how many seats are empty in rows rows of per_row seats each when taken seats are occupied.",
        "def empty_seats(rows, per_row, taken):\n    return rows * per_row - taken\n",
        "assert empty_seats(10, 20, 35) == 165\nassert empty_seats(3, 4, 0) == 12\n",
    ),
    "pages_needed": (
        "Return how many pages are needed to show items items with per_page items on each page.",
        "def pages_needed(items, per_page):\n    return (items + per_page - 1) // per_page\n",
        "assert pages_needed(10, 3) == 4\nassert pages_needed(9, 3) == 3\nassert pages_needed(1, 5) == 1\n",
    ),
    "total_inches": (
        "Return the total inches in feet feet and inches inches, with 12 inches to a foot.",
        "def total_inches(feet, inches):\n    return feet * 12 + inches\n",
        "assert total_inches(5, 3) == 63\nassert total_inches(0, 7) == 7\n",
    ),
    "feet_and_inches": (
        "Return (feet, inches) for a length in inches, with 12 inches to a foot.",
        "def feet_and_inches(inches):\n    return (inches // 12, inches % 12)\n",
        "assert feet_and_inches(30) == (2, 6)\nassert feet_and_inches(12) == (1, 0)\nassert feet_and_inches(5) == (0, 5)\n",
    ),
    "last_digit": (
        "Return the last digit of a non-negative integer n.",
        "def last_digit(n):\n    return n % 10\n",
        "assert last_digit(123) == 3\nassert last_digit(7) == 7\nassert last_digit(50) == 0\n",
    ),
    "drop_last_digit": (
        "Return the non-negative integer n without its last digit.",
        "def drop_last_digit(n):\n    return n // 10\n",
        "assert drop_last_digit(123) == 12\nassert drop_last_digit(7) == 0\n",
    ),
    "tens_digit": (
        "Return the tens digit of a non-negative integer n.",
        "def tens_digit(n):\n    return n // 10 % 10\n",
        "assert tens_digit(123) == 2\nassert tens_digit(5) == 0\nassert tens_digit(90) == 9\n",
    ),
    "digit_sum": (
        "Return the sum of the digits of a non-negative integer n.",
        "def digit_sum(n):\n    s = 0\n    for ch in str(n):\n        s = s + int(ch)\n    return s\n",
        "assert digit_sum(123) == 6\nassert digit_sum(907) == 16\n",
    ),
    "is_divisible": (
        "Return True when a is divisible by b.",
        "def is_divisible(a, b):\n    return a % b == 0\n",
        "assert is_divisible(10, 5)\nassert not is_divisible(10, 3)\nassert not is_divisible(3, 10)\n",
    ),
    "multiple_of_3_or_5": (
        "Return True when n is a multiple of 3 or a multiple of 5.",
        "def multiple_of_3_or_5(n):\n    return n % 3 == 0 or n % 5 == 0\n",
        "assert multiple_of_3_or_5(9)\nassert multiple_of_3_or_5(10)\nassert multiple_of_3_or_5(15)\nassert not multiple_of_3_or_5(7)\n",
    ),
    "nth_odd": (
        "Return the n-th odd number, counting from n = 1 for 1.",
        "def nth_odd(n):\n    return 2 * n - 1\n",
        "assert nth_odd(1) == 1\nassert nth_odd(3) == 5\n",
    ),
    "triangular": (
        "Return 1 + 2 + ... + n, which is n * (n + 1) // 2.",
        "def triangular(n):\n    return n * (n + 1) // 2\n",
        "assert triangular(4) == 10\nassert triangular(1) == 1\nassert triangular(0) == 0\n",
    ),
    "sign": (
        "Return 1 for a positive x, -1 for a negative x and 0 for zero.",
        "def sign(x):\n    if x > 0:\n        return 1\n    if x < 0:\n        return -1\n    return 0\n",
        "assert sign(5) == 1\nassert sign(-2) == -1\nassert sign(0) == 0\n",
    ),
    "clamp": (
        "Return x limited to the range lo to hi: lo if x is below lo, hi if x is above hi.",
        "def clamp(x, lo, hi):\n    if x < lo:\n        return lo\n    if x > hi:\n        return hi\n    return x\n",
        "assert clamp(5, 0, 10) == 5\nassert clamp(-3, 0, 10) == 0\nassert clamp(12, 0, 10) == 10\n",
    ),
    "max_of_three": (
        "Return the largest of a, b and c.",
        "def max_of_three(a, b, c):\n    m = a\n    if b > m:\n        m = b\n    if c > m:\n        m = c\n    return m\n",
        "assert max_of_three(1, 5, 3) == 5\nassert max_of_three(7, 2, 4) == 7\nassert max_of_three(2, 3, 9) == 9\n",
    ),
    "is_between": (
        "Return True when lo <= x <= hi.",
        "def is_between(x, lo, hi):\n    return lo <= x and x <= hi\n",
        "assert is_between(5, 1, 10)\nassert is_between(1, 1, 10)\nassert is_between(10, 1, 10)\nassert not is_between(11, 1, 10)\n",
    ),
    "is_outside": (
        "Return True when x is below lo or above hi.",
        "def is_outside(x, lo, hi):\n    return x < lo or x > hi\n",
        "assert is_outside(0, 1, 5)\nassert is_outside(6, 1, 5)\nassert not is_outside(1, 1, 5)\nassert not is_outside(5, 1, 5)\n",
    ),
    "safe_divide": (
        "Return a divided by b, or 0 when b is 0.",
        "def safe_divide(a, b):\n    if b == 0:\n        return 0\n    return a / b\n",
        "assert safe_divide(6, 4) == 1.5\nassert safe_divide(5, 0) == 0\n",
    ),
    "sum_of_squares": (
        "Return the sum of the squares of the numbers in xs.",
        "def sum_of_squares(xs):\n    s = 0\n    for x in xs:\n        s = s + x * x\n    return s\n",
        "assert sum_of_squares([1, 2, 3]) == 14\nassert sum_of_squares([]) == 0\n",
    ),
    "product": (
        "Return the product of the numbers in xs, or 1 for an empty list.",
        "def product(xs):\n    p = 1\n    for x in xs:\n        p = p * x\n    return p\n",
        "assert product([2, 3, 4]) == 24\nassert product([]) == 1\n",
    ),
    "sum_to_n": (
        "Return the sum of the integers from 1 to n.",
        "def sum_to_n(n):\n    s = 0\n    for i in range(1, n + 1):\n        s = s + i\n    return s\n",
        "assert sum_to_n(4) == 10\nassert sum_to_n(1) == 1\nassert sum_to_n(0) == 0\n",
    ),
    "sum_of_odds": (
        "Return the sum of the odd numbers from 1 to n.",
        "def sum_of_odds(n):\n    s = 0\n    for i in range(1, n + 1, 2):\n        s = s + i\n    return s\n",
        "assert sum_of_odds(5) == 9\nassert sum_of_odds(6) == 9\nassert sum_of_odds(1) == 1\n",
    ),
    "sum_even": (
        "Return the sum of the even numbers in xs.",
        "def sum_even(xs):\n    s = 0\n    for x in xs:\n        if x % 2 == 0:\n            s = s + x\n    return s\n",
        "assert sum_even([1, 2, 3, 4]) == 6\nassert sum_even([5]) == 0\nassert sum_even([]) == 0\n",
    ),
    "sum_of_multiples": (
        "Return the sum of the numbers from 0 up to but not including n that are multiples of k.",
        "def sum_of_multiples(n, k):\n    s = 0\n    for i in range(n):\n        if i % k == 0:\n            s = s + i\n    return s\n",
        "assert sum_of_multiples(10, 3) == 18\nassert sum_of_multiples(5, 5) == 0\n",
    ),
    "count_even": (
        "Return how many numbers in xs are even.",
        "def count_even(xs):\n    n = 0\n    for x in xs:\n        if x % 2 == 0:\n            n = n + 1\n    return n\n",
        "assert count_even([1, 2, 3, 4, 6]) == 3\nassert count_even([]) == 0\n",
    ),
    "count_greater": (
        "Return how many numbers in xs are greater than limit.",
        "def count_greater(xs, limit):\n    n = 0\n    for x in xs:\n        if x > limit:\n            n = n + 1\n    return n\n",
        "assert count_greater([1, 5, 7, 5], 5) == 1\nassert count_greater([6, 8, 2], 5) == 2\nassert count_greater([], 3) == 0\n",
    ),
    "count_equal": (
        "Return how many items in xs are equal to target.",
        "def count_equal(xs, target):\n    n = 0\n    for x in xs:\n        if x == target:\n            n = n + 1\n    return n\n",
        "assert count_equal([1, 2, 1, 1], 1) == 3\nassert count_equal([], 4) == 0\n",
    ),
    "count_between": (
        "Return how many numbers in xs are from lo to hi, both included.",
        "def count_between(xs, lo, hi):\n    n = 0\n    for x in xs:\n        if x >= lo and x <= hi:\n            n = n + 1\n    return n\n",
        "assert count_between([1, 3, 5, 7], 3, 5) == 2\nassert count_between([2, 8], 3, 5) == 0\n",
    ),
    "index_of_max": (
        "Return the index of the first largest number in a non-empty list.",
        "def index_of_max(xs):\n    best = 0\n    for i in range(len(xs)):\n        if xs[i] > xs[best]:\n            best = i\n    return best\n",
        "assert index_of_max([3, 9, 2]) == 1\nassert index_of_max([5, 1]) == 0\nassert index_of_max([1, 2, 2]) == 1\n",
    ),
    "first_negative_index": (
        "Return the index of the first negative number in xs, or -1 if there is none.",
        "def first_negative_index(xs):\n    for i in range(len(xs)):\n        if xs[i] < 0:\n            return i\n    return -1\n",
        "assert first_negative_index([3, -1, -5]) == 1\nassert first_negative_index([2, 0]) == -1\nassert first_negative_index([-2]) == 0\n",
    ),
    "count_increases": (
        "Return how many items in xs are greater than the item just before them.",
        "def count_increases(xs):\n    n = 0\n    for i in range(1, len(xs)):\n        if xs[i] > xs[i - 1]:\n            n = n + 1\n    return n\n",
        "assert count_increases([1, 2, 2, 3, 1]) == 2\nassert count_increases([5]) == 0\nassert count_increases([3, 2, 1]) == 0\n",
    ),
    "is_sorted": (
        "Return True when xs is in non-decreasing order (equal neighbours are allowed).",
        "def is_sorted(xs):\n    for i in range(1, len(xs)):\n        if xs[i] < xs[i - 1]:\n            return False\n    return True\n",
        "assert is_sorted([1, 2, 2, 5])\nassert not is_sorted([3, 1])\nassert not is_sorted([1, 4, 3])\nassert is_sorted([])\n",
    ),
    "all_positive": (
        "Return True when every number in xs is greater than zero.",
        "def all_positive(xs):\n    for x in xs:\n        if x <= 0:\n            return False\n    return True\n",
        "assert all_positive([1, 2])\nassert not all_positive([1, 0])\nassert not all_positive([3, -1])\n",
    ),
    "dot_product": (
        "Return the sum of xs[i] * ys[i] over the positions of two lists of equal length.",
        "def dot_product(xs, ys):\n    s = 0\n    for i in range(len(xs)):\n        s = s + xs[i] * ys[i]\n    return s\n",
        "assert dot_product([1, 2, 3], [4, 5, 6]) == 32\nassert dot_product([], []) == 0\n",
    ),
    "count_matches": (
        "Return how many positions hold equal items in two lists of the same length.",
        "def count_matches(xs, ys):\n    n = 0\n    for i in range(len(xs)):\n        if xs[i] == ys[i]:\n            n = n + 1\n    return n\n",
        "assert count_matches([1, 2, 3], [1, 5, 3]) == 2\nassert count_matches([4], [5]) == 0\n",
    ),
    "count_pairs_with_sum": (
        "Return how many pairs of positions i < j in xs have xs[i] + xs[j] equal to target.",
        "def count_pairs_with_sum(xs, target):\n    n = 0\n    for i in range(len(xs)):\n        for j in range(i + 1, len(xs)):\n            if xs[i] + xs[j] == target:\n                n = n + 1\n    return n\n",
        "assert count_pairs_with_sum([1, 2, 3, 4], 5) == 2\nassert count_pairs_with_sum([1, 1], 3) == 0\nassert count_pairs_with_sum([3, 3], 6) == 1\n",
    ),
    "doubled": (
        "Return a new list with every number in xs multiplied by 2.",
        "def doubled(xs):\n    return [x * 2 for x in xs]\n",
        "assert doubled([1, 3]) == [2, 6]\nassert doubled([]) == []\n",
    ),
    "positives": (
        "Return the numbers in xs that are greater than zero, in order.",
        "def positives(xs):\n    return [x for x in xs if x > 0]\n",
        "assert positives([3, -1, 0, 2]) == [3, 2]\nassert positives([]) == []\n",
    ),
    "squares_up_to": (
        "Return the list of the squares of 1 to n.",
        "def squares_up_to(n):\n    return [i * i for i in range(1, n + 1)]\n",
        "assert squares_up_to(3) == [1, 4, 9]\nassert squares_up_to(0) == []\n",
    ),
    "is_perfect_square": (
        "Return True when n (0 or more) is the square of a whole number.",
        "def is_perfect_square(n):\n    for i in range(n + 1):\n        if i * i == n:\n            return True\n    return False\n",
        "assert is_perfect_square(16)\nassert is_perfect_square(0)\nassert is_perfect_square(1)\nassert not is_perfect_square(15)\n",
    ),
    "count_divisors": (
        "Return how many numbers from 1 to n divide n exactly.",
        "def count_divisors(n):\n    c = 0\n    for d in range(1, n + 1):\n        if n % d == 0:\n            c = c + 1\n    return c\n",
        "assert count_divisors(6) == 4\nassert count_divisors(7) == 2\nassert count_divisors(1) == 1\n",
    ),
    "is_prime": (
        "Return True when n is a prime number.",
        "def is_prime(n):\n    if n < 2:\n        return False\n    for d in range(2, n):\n        if n % d == 0:\n            return False\n    return True\n",
        "assert is_prime(7)\nassert is_prime(2)\nassert not is_prime(9)\nassert not is_prime(1)\n",
    ),
    "count_letter": (
        "Return how many times letter appears in s.",
        "def count_letter(s, letter):\n    n = 0\n    for ch in s:\n        if ch == letter:\n            n = n + 1\n    return n\n",
        "assert count_letter('a b c', ' ') == 2\nassert count_letter('hello', 'l') == 2\nassert count_letter('abc', 'z') == 0\n",
    ),
    "count_uppercase": (
        "Return how many characters of s are uppercase letters A to Z.",
        "def count_uppercase(s):\n    n = 0\n    for ch in s:\n        if 'A' <= ch and ch <= 'Z':\n            n = n + 1\n    return n\n",
        "assert count_uppercase('HeLLo') == 3\nassert count_uppercase('AZ') == 2\nassert count_uppercase('abc') == 0\n",
    ),
    "is_digit_char": (
        "Return True when ch is one of the characters '0' to '9'.",
        "def is_digit_char(ch):\n    return '0' <= ch <= '9'\n",
        "assert is_digit_char('0')\nassert is_digit_char('9')\nassert is_digit_char('5')\nassert not is_digit_char('a')\n",
    ),
    "longer_string": (
        "Return the longer of two strings, or a when they have the same length.",
        "def longer_string(a, b):\n    if len(a) >= len(b):\n        return a\n    return b\n",
        "assert longer_string('abc', 'de') == 'abc'\nassert longer_string('ab', 'xyz') == 'xyz'\nassert longer_string('ab', 'cd') == 'ab'\n",
    ),
    "longer_than": (
        "Return True when s has more than n characters.",
        "def longer_than(s, n):\n    return len(s) > n\n",
        "assert longer_than('hello', 3)\nassert not longer_than('hi', 2)\nassert not longer_than('a', 5)\n",
    ),
    "average_word_length": (
        "Return the mean number of letters per word in a non-empty list of words.",
        "def average_word_length(words):\n    s = 0\n    for w in words:\n        s = s + len(w)\n    return s / len(words)\n",
        "assert average_word_length(['ab', 'abc']) == 2.5\nassert average_word_length(['abcd']) == 4\n",
    ),
    "count_long_words": (
        "Return how many words have at least n letters.",
        "def count_long_words(words, n):\n    c = 0\n    for w in words:\n        if len(w) >= n:\n            c = c + 1\n    return c\n",
        "assert count_long_words(['a', 'abc', 'abcd'], 3) == 2\nassert count_long_words([], 2) == 0\n",
    ),
}

SWAPS: dict[type, list[type]] = {
    ast.Add: [ast.Sub, ast.Mult],
    ast.Sub: [ast.Add],
    ast.Mult: [ast.Add, ast.Pow],
    ast.Div: [ast.Mult, ast.FloorDiv],
    ast.FloorDiv: [ast.Div, ast.Mod],
    ast.Mod: [ast.FloorDiv],
    ast.Pow: [ast.Mult],
    ast.Lt: [ast.LtE, ast.Gt],
    ast.LtE: [ast.Lt],
    ast.Gt: [ast.GtE, ast.Lt],
    ast.GtE: [ast.Gt],
    ast.Eq: [ast.NotEq],
    ast.NotEq: [ast.Eq],
    ast.And: [ast.Or],
    ast.Or: [ast.And],
}


def operator_nodes(tree: ast.AST) -> list[tuple[ast.AST, str, int]]:
    """(node, field, position) of every operator a swap can replace, in source order."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.BinOp, ast.BoolOp)) and type(node.op) in SWAPS:
            found.append((node, "op", -1))
        elif isinstance(node, ast.Compare):
            found += [(node, "ops", i) for i, op in enumerate(node.ops) if type(op) in SWAPS]
    return found


def mutants(code: str) -> list[str]:
    """Every program with exactly one operator swapped."""
    programs = []
    for index in range(len(operator_nodes(ast.parse(code)))):
        probe = ast.parse(code)
        node, field, position = operator_nodes(probe)[index]
        original = getattr(node, field) if position < 0 else node.ops[position]
        for replacement in SWAPS[type(original)]:
            tree = ast.parse(code)
            node, field, position = operator_nodes(tree)[index]
            if position < 0:
                setattr(node, field, replacement())
            else:
                node.ops[position] = replacement()
            programs.append(ast.unparse(tree) + "\n")
    return programs


def tests_fail(program: str, tests: str) -> bool:
    """The QuixBugs rule: program + tests as one script; a non-zero exit is a failure."""
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as script:
        script.write(program + "\n\n" + tests)
    try:
        return (
            subprocess.run(
                [sys.executable, script.name], capture_output=True, timeout=10
            ).returncode
            != 0
        )
    except subprocess.TimeoutExpired:
        return True
    finally:
        Path(script.name).unlink()


def make_bugs(per_function: int = 2) -> dict[str, list[dict]]:
    """{function name: up to `per_function` QuixBugs-format records of caught bugs}."""
    bugs: dict[str, list[dict]] = {}
    for name, (docstring, solution, tests) in FUNCTIONS.items():
        if tests_fail(solution, tests):
            raise AssertionError(f"{name}: the correct program fails its own tests")
        records = []
        for number, program in enumerate(mutants(solution)):
            if len(records) == per_function:
                break
            if tests_fail(program, tests):
                records.append(
                    # Not `name_N`: the file is named after the task, and a model shown
                    # `halve_0.py` tends to rename the function to halve_0.
                    {
                        "name": f"{name}-bug{number}",
                        "buggy_program": program,
                        "docstring": docstring,
                        "solution": solution,
                        "tests": tests,
                    }
                )
        bugs[name] = records
    return bugs


def write_split(
    out: Path, eval_functions: int = 8, per_function: int = 2
) -> tuple[Path, Path, int, int]:
    """train.jsonl and eval.jsonl in `out`, split by function (the last `eval_functions` in
    a fixed shuffled order go to eval). Returns the paths and the task counts."""
    import random

    bugs = make_bugs(per_function)
    names = sorted(bugs)
    random.Random(0).shuffle(names)
    eval_names, train_names = names[:eval_functions], names[eval_functions:]
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    counts = []
    for split, chosen in (("train", train_names), ("eval", eval_names)):
        records = [record for name in chosen for record in bugs[name]]
        path = out / f"{split}.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
        paths.append(path)
        counts.append(len(records))
    return paths[0], paths[1], counts[0], counts[1]
