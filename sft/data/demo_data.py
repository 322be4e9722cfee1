"""The project's own demo data, generated deterministically so the quickstart and tests need no download.

The rows imitate the practitioner's three tasks (yiliao consultations, cate classification, spo triple
extraction) closely enough to exercise the real data path: LLaMA-Factory's alpaca and sharegpt formats,
system prompts, multi-turn history, and a `dataset_info.json`. The text is assembled from templates and
small vocabularies combinatorially: a symptom decides the condition, the condition decides the answer, so
a model has structure to learn but cannot simply memorise a handful of strings.

`python -m sft.data.demo_data data/` rewrites the committed files; the output depends only on the seed.
"""
from __future__ import annotations

import json
import random
import sys
from dataclasses import dataclass
from pathlib import Path

DEMO_SEED = 20261127
YILIAO_ROWS = 1200
YILIAO_SHAREGPT_ROWS = 300
CATE_ROWS = 200
SPO_ROWS = 300


@dataclass(frozen=True)
class Condition:
    """One illness as a doctor would explain it: what the patient feels and what the doctor says."""

    diagnosis: str
    department: str
    symptoms: tuple[str, ...]
    cause: str
    advice: tuple[str, ...]
    drugs: tuple[str, ...]
    tests: tuple[str, ...]
    diet: str
    red_flags: tuple[str, ...]


CONDITIONS: tuple[Condition, ...] = (
    Condition("上呼吸道感染", "呼吸内科", ("鼻塞", "流鼻涕", "打喷嚏", "咽喉痛", "低烧", "全身乏力"),
              "受凉或病毒感染", ("多喝温水", "注意休息", "保持室内通风"),
              ("服用对乙酰氨基酚缓解发热和头痛", "使用复方感冒药缓解鼻塞"), ("血常规",),
              "饮食宜清淡，多吃蔬菜水果", ("高烧三天不退", "呼吸困难")),
    Condition("急性胃肠炎", "消化内科", ("肚子疼", "拉肚子", "恶心", "呕吐", "没有胃口"),
              "饮食不洁", ("暂时不要吃油腻食物", "少量多次补充水分", "口服补液盐预防脱水"),
              ("服用蒙脱石散止泻", "服用益生菌调节肠道菌群"), ("大便常规", "血常规"),
              "先吃米粥、面条等容易消化的食物", ("大便带血", "严重脱水、尿量明显减少")),
    Condition("偏头痛", "神经内科", ("一侧头痛", "头一跳一跳地疼", "怕光", "恶心", "头晕"),
              "睡眠不足和精神紧张", ("规律作息", "避免熬夜", "发作时在安静昏暗的房间休息"),
              ("服用布洛芬止痛", "在医生指导下使用预防头痛的药物"), ("头颅核磁共振",),
              "少喝咖啡和酒，避免巧克力、奶酪等容易诱发头痛的食物", ("突然剧烈头痛", "肢体麻木或说话不清")),
    Condition("高血压", "心血管内科", ("头晕", "头胀", "脖子发紧", "心慌", "耳鸣"),
              "遗传、高盐饮食和缺乏运动", ("每天早晚测量血压并记录", "坚持低盐饮食", "每周做几次快走等有氧运动"),
              ("在医生指导下服用氨氯地平等降压药", "按时服药，不要自行停药"), ("动态血压监测", "心电图", "肾功能"),
              "每天食盐不超过5克，少吃腌制食品", ("血压超过180/110", "胸痛或视物模糊")),
    Condition("湿疹", "皮肤科", ("皮肤瘙痒", "起红疹", "皮肤干燥脱皮", "皮肤渗水", "起小水泡"),
              "皮肤屏障受损和过敏", ("避免搔抓", "洗澡水温不要太高", "每天涂抹保湿霜"),
              ("外用弱效激素药膏", "口服氯雷他定止痒"), ("过敏原检测",),
              "少吃辛辣刺激的食物和海鲜", ("皮疹大面积渗液", "皮肤化脓感染")),
    Condition("慢性咽炎", "耳鼻喉科", ("嗓子有异物感", "干咳", "嗓子干痒", "总想清嗓子", "声音嘶哑"),
              "长期用嗓过度、吸烟或空气干燥", ("戒烟限酒", "少说话多喝水", "保持室内空气湿润"),
              ("含服润喉片缓解症状", "做雾化治疗"), ("喉镜检查",),
              "避免辛辣油炸食物", ("吞咽困难", "声音嘶哑超过两周")),
    Condition("失眠症", "精神心理科", ("入睡困难", "夜里容易醒", "早醒", "白天没精神", "注意力不集中"),
              "压力大和作息不规律", ("固定时间上床和起床", "睡前一小时不看手机", "白天适当运动"),
              ("在医生指导下短期使用助眠药物", "配合认知行为治疗"), ("睡眠监测", "焦虑抑郁量表评估"),
              "晚上不喝浓茶和咖啡", ("失眠持续一个月以上", "情绪持续低落")),
    Condition("腰肌劳损", "骨科", ("腰疼", "腰部酸胀", "久坐后腰痛加重", "弯腰困难", "腰部僵硬"),
              "长期久坐和姿势不良", ("避免久坐，每小时起身活动", "睡硬板床", "局部热敷"),
              ("外用双氯芬酸凝胶", "口服布洛芬止痛"), ("腰椎X光片", "腰椎核磁共振"),
              "控制体重，多吃富含钙的食物", ("下肢麻木无力", "大小便控制困难")),
    Condition("缺铁性贫血", "血液科", ("脸色苍白", "浑身没劲", "活动后心慌气短", "头晕", "指甲变脆"),
              "铁摄入不足或慢性失血", ("查明失血的原因", "按疗程补充铁剂"),
              ("口服硫酸亚铁补铁", "同时服用维生素C促进铁吸收"), ("血常规", "血清铁蛋白"),
              "多吃瘦肉、动物肝脏和深绿色蔬菜", ("大便发黑", "月经量明显增多")),
    Condition("尿路感染", "泌尿外科", ("尿频", "尿急", "小便疼", "小肚子坠胀", "尿液浑浊"),
              "细菌感染", ("多喝水、勤排尿", "注意个人卫生"),
              ("在医生指导下使用左氧氟沙星等抗生素", "按疗程用药，不要症状一好就停药"), ("尿常规", "尿培养"),
              "多喝水，少吃辛辣食物", ("发烧伴腰痛", "尿中带血")),
    Condition("过敏性鼻炎", "耳鼻喉科", ("连续打喷嚏", "流清鼻涕", "鼻子痒", "鼻塞", "眼睛痒"),
              "花粉、尘螨等过敏原", ("尽量避开过敏原", "外出戴口罩", "用生理盐水冲洗鼻腔"),
              ("使用鼻用激素喷剂", "口服氯雷他定抗过敏"), ("过敏原检测", "鼻内镜检查"),
              "饮食均衡，注意记录可能引起过敏的食物", ("出现喘息", "胸闷")),
    Condition("胃食管反流病", "消化内科", ("烧心", "反酸", "胸口发热", "老是打嗝", "饭后上腹胀"),
              "贲门松弛和饮食过饱", ("少食多餐", "饭后不要马上躺下", "睡觉时把床头抬高"),
              ("服用奥美拉唑抑制胃酸", "服用铝碳酸镁保护胃黏膜"), ("胃镜",),
              "少吃甜食、浓茶、咖啡和油腻食物", ("吞咽困难", "体重明显下降")),
    Condition("结膜炎", "眼科", ("眼睛发红", "眼屎多", "眼睛痒", "总流眼泪", "眼里有异物感"),
              "细菌或病毒感染", ("不要用手揉眼睛", "毛巾和脸盆单独使用"),
              ("使用左氧氟沙星滴眼液", "冷敷缓解眼痒"), ("裂隙灯检查",),
              "少吃辛辣食物", ("视力下降", "眼睛剧烈疼痛")),
    Condition("2型糖尿病", "内分泌科", ("口渴", "喝水多", "小便多", "体重下降", "容易饿"),
              "胰岛素分泌不足或作用减弱", ("监测空腹和餐后血糖", "控制饮食", "坚持运动"),
              ("在医生指导下服用二甲双胍", "定期复查并按医嘱调整用药"), ("空腹血糖", "糖化血红蛋白"),
              "控制主食的量，少吃甜食和含糖饮料", ("意识模糊", "呼吸有烂苹果味")),
)

PATIENTS = ("我", "我家孩子", "我妈妈", "我爸爸", "我爱人", "我奶奶", "我同事")
DURATIONS = ("两天", "三天", "四五天", "一周", "十来天", "半个月", "一个多月", "两个月", "半年")
DETAILS = ("晚上更严重", "吃了药也没有好转", "以前没有出现过", "最近工作很忙", "时好时坏",
           "早上起来比较明显", "已经影响到生活了", "不知道要不要紧")
GENDERS = ("男", "女")

PATIENT_TEMPLATES = (
    "医生您好，{who}最近{dur}一直{s1}，还{s2}，请问是怎么回事？",
    "{who}{dur}前开始{s1}、{s2}，{detail}，需要去医院吗？",
    "请问{s1}伴有{s2}是什么原因？{who}已经持续{dur}了。",
    "你好，{who}{s1}，{s2}，{detail}。该怎么办？",
    "{who}这{dur}总是{s1}和{s2}，{detail}，是不是得了什么病？",
    "大夫，{who}{s1}已经{dur}了，最近又出现{s2}，{s3}，要紧吗？",
    "{who}{s1}{dur}了，同时{s2}，{detail}，想问一下应该挂哪个科？",
)

BACKGROUNDS = ("平时身体还可以。", "之前有高血压病史。", "已经自己吃过一些药。", "家里人也有类似情况。",
               "最近天气变化比较大。", "饮食和睡眠都不太规律。", "去年体检一切正常。", "没有药物过敏史。")

# A doctor's answer is assembled from these parts in order; each part has a few phrasings.
DIAGNOSIS_OPENINGS = (
    "您好，根据您描述的{sym}等症状，考虑{dx}的可能性比较大。",
    "你好，{sym}持续{dur}，首先要考虑{dx}。",
    "从症状来看，{sym}是{dx}的常见表现。",
    "您好，出现{sym}，多数情况下是{dx}引起的。",
)
CAUSE_SENTENCES = ("这种情况多与{cause}有关。", "常见原因是{cause}。", "{dx}的发生往往和{cause}有关。")
ADVICE_SENTENCES = ("建议{advice}。", "平时要注意{advice}。", "处理上，首先要{advice}。")
DRUG_SENTENCES = ("必要时可以{drug}。", "药物方面，可以{drug}。", "症状明显时，可以{drug}。")
TEST_SENTENCES = ("如果症状持续，建议到{dept}做{tests}明确诊断。", "建议先到{dept}就诊，做{tests}，明确诊断后再对症治疗。")
RED_FLAG_SENTENCES = ("如果出现{red}，请及时到医院{dept}就诊。", "若{red}，应尽快就医。")
CLOSINGS = ("", "", "祝您早日康复！", "希望对您有帮助。", "注意观察病情变化。")

FOLLOW_UPS = {
    "drug": ("那需要吃什么药？", "可以用什么药缓解一下？", "有没有什么药可以吃？"),
    "test": ("需要做哪些检查？", "去医院要查什么？"),
    "diet": ("饮食上要注意什么？", "平时吃东西有什么忌口吗？"),
    "red": ("什么情况下必须去医院？", "出现什么情况要马上就医？"),
}

SYSTEM_PROMPTS = (
    "你是一名经验丰富的全科医生，请用通俗易懂的语言回答患者的问题。",
    "你是一名医生，请根据患者描述的症状给出可能的原因和建议。",
    "你是在线问诊平台的医生助手，回答要专业、简洁、有条理。",
)


def _patient_info(rng: random.Random) -> str:
    return f"性别：{rng.choice(GENDERS)}，年龄：{rng.randint(3, 80)}岁"


def _consultation(rng: random.Random, condition: Condition) -> tuple[str, str]:
    """One first question about `condition` and the doctor's answer."""
    s1, s2, s3 = rng.sample(condition.symptoms, 3)
    dur = rng.choice(DURATIONS)
    question = rng.choice(PATIENT_TEMPLATES).format(
        who=rng.choice(PATIENTS), dur=dur, s1=s1, s2=s2, s3=s3, detail=rng.choice(DETAILS))
    question += "".join(rng.sample(BACKGROUNDS, rng.choice((0, 0, 1, 2))))
    sym = f"{s1}、{s2}"
    parts = [
        rng.choice(DIAGNOSIS_OPENINGS).format(sym=sym, dur=dur, dx=condition.diagnosis),
        rng.choice(CAUSE_SENTENCES).format(cause=condition.cause, dx=condition.diagnosis),
        rng.choice(ADVICE_SENTENCES).format(
            advice="，".join(rng.sample(condition.advice, rng.randint(2, len(condition.advice))))),
    ]
    if rng.random() < 0.8:
        parts.append(rng.choice(DRUG_SENTENCES).format(drug=rng.choice(condition.drugs)))
    if rng.random() < 0.6:
        parts.append(rng.choice(TEST_SENTENCES).format(dept=condition.department, tests="、".join(condition.tests)))
    if rng.random() < 0.5:
        parts.append(f"另外，{condition.diet}。")
    parts.append(rng.choice(RED_FLAG_SENTENCES).format(
        red=rng.choice(condition.red_flags), dept=condition.department))
    parts.append(rng.choice(CLOSINGS))
    return question, "".join(parts)


def _follow_up(rng: random.Random, condition: Condition) -> tuple[str, str]:
    """A follow-up question in the same consultation, answered from the condition's facts."""
    topic = rng.choice(sorted(FOLLOW_UPS))
    question = rng.choice(FOLLOW_UPS[topic])
    if topic == "drug":
        answer = (f"针对{condition.diagnosis}，可以{condition.drugs[0]}，也可以{condition.drugs[1]}。"
                  "用药前请仔细阅读说明书，按说明的剂量和疗程服用；如果有其他基础疾病或正在服用别的药物，请先咨询医生或药师。")
    elif topic == "test":
        answer = (f"建议到{condition.department}做{'、'.join(condition.tests)}，"
                  f"以明确是否为{condition.diagnosis}，并排除其他疾病。检查前请带上以前的病历和检查结果，方便医生对比。")
    elif topic == "diet":
        answer = (f"{condition.diet}。除了饮食，生活上也要{'，'.join(condition.advice)}。"
                  "保持规律作息和良好的心态，对恢复也有帮助。")
    else:
        answer = (f"如果出现{'或'.join(condition.red_flags)}，说明病情可能加重，"
                  f"需要立即到医院{condition.department}就诊，不要在家里拖延。平时症状轻微时，可以先按上面的方法观察处理。")
    return question, answer


def make_yiliao_alpaca(rng: random.Random, rows: int) -> list[dict]:
    """Consultations in alpaca format; some rows carry a system prompt, patient info or a history turn."""
    records = []
    for _ in range(rows):
        condition = rng.choice(CONDITIONS)
        question, answer = _consultation(rng, condition)
        record: dict = {"instruction": question, "input": "", "output": answer}
        if rng.random() < 0.25:
            record["input"] = _patient_info(rng)
        if rng.random() < 0.2:
            record["system"] = rng.choice(SYSTEM_PROMPTS)
        if rng.random() < 0.1:
            follow_question, follow_answer = _follow_up(rng, condition)
            record["history"] = [[question, answer]]
            record["instruction"] = follow_question
            record["output"] = follow_answer
        records.append(record)
    return records


def make_yiliao_sharegpt(rng: random.Random, rows: int) -> list[dict]:
    """Consultations in sharegpt format: one to three turns, some with a system prompt."""
    records = []
    for _ in range(rows):
        condition = rng.choice(CONDITIONS)
        turns = [_consultation(rng, condition)]
        for _ in range(rng.choice((0, 0, 1, 2))):
            turns.append(_follow_up(rng, condition))
        conversation = []
        for question, answer in turns:
            conversation.append({"from": "human", "value": question})
            conversation.append({"from": "gpt", "value": answer})
        record: dict = {"conversations": conversation}
        if rng.random() < 0.3:
            record["system"] = rng.choice(SYSTEM_PROMPTS)
        records.append(record)
    return records


CATEGORIES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    # label: (sentence templates, fillers for {x})
    "体育": (("{x}昨晚以二比一战胜对手，晋级决赛。", "本赛季{x}的表现十分出色，球迷期待他们夺冠。",
              "{x}主教练在赛后发布会上表示球队还需要加强防守。"),
             ("国家女排", "市篮球队", "青年足球队", "乒乓球队", "游泳队", "羽毛球队")),
    "财经": (("{x}今日发布季度财报，营业收入同比增长百分之十二。", "受市场情绪影响，{x}股价今天下跌超过三个百分点。",
              "分析人士认为，{x}明年的利润有望继续增长。"),
             ("一家新能源车企", "某大型银行", "一家连锁超市", "某物流公司", "一家保险公司", "某地产集团")),
    "科技": (("{x}发布了新一代芯片，性能提升约三成。", "研究人员利用{x}实现了更高效的图像识别。",
              "{x}宣布开源其大语言模型，供开发者免费使用。"),
             ("一家手机厂商", "某人工智能实验室", "一家互联网公司", "某高校团队", "一家机器人企业", "某云计算平台")),
    "娱乐": (("{x}的新电影上映首日票房突破一亿元。", "{x}将在下个月举办全国巡回演唱会。",
              "{x}主演的电视剧收视率位居同时段第一。"),
             ("一位知名导演", "一位青年歌手", "某乐队", "一位影视演员", "某综艺节目", "一位喜剧演员")),
    "教育": (("{x}今年将扩大招生规模，新增三个专业。", "{x}推出课后服务，帮助学生完成作业。",
              "教育部门要求{x}减轻学生的课业负担。"),
             ("一所重点大学", "某市中小学", "一所职业学校", "某县实验小学", "一所师范大学", "某培训机构")),
    "健康": (("专家提醒，{x}要注意合理膳食和适量运动。", "秋冬季节，{x}应及时接种流感疫苗。",
              "研究发现，长期熬夜会增加{x}患心血管疾病的风险。"),
             ("老年人", "上班族", "青少年", "孕妇", "慢性病患者", "久坐人群")),
}

CATE_INSTRUCTION = "请判断下面这段文字属于哪个类别，只回答类别名称。可选类别：{labels}。"


def make_cate(rng: random.Random, rows: int) -> list[dict]:
    """Short news-like texts, each labelled with one of a handful of categories."""
    labels = sorted(CATEGORIES)
    instruction = CATE_INSTRUCTION.format(labels="、".join(labels))
    records = []
    for _ in range(rows):
        label = rng.choice(labels)
        templates, fillers = CATEGORIES[label]
        text = rng.choice(templates).format(x=rng.choice(fillers))
        records.append({"instruction": instruction, "input": text, "output": label})
    return records


SURNAMES = "张王李赵陈刘杨黄周吴徐孙马朱胡郭何林罗高"
GIVEN_NAMES = ("伟", "芳", "娜", "敏", "静", "丽", "强", "磊", "洋", "杰", "涛", "超",
               "秀英", "志强", "建华", "晓燕", "海涛", "子涵", "雨轩", "思远")
CITIES = ("北京", "上海", "广州", "深圳", "杭州", "成都", "武汉", "西安", "南京", "重庆", "苏州", "长沙", "青岛", "厦门")
UNIVERSITIES = ("北京大学", "清华大学", "复旦大学", "浙江大学", "南京大学", "武汉大学", "中山大学", "四川大学")
COMPANY_HEADS = ("星辰", "远航", "华瑞", "蓝海", "恒通", "青松", "金桥", "云帆")
COMPANY_TRADES = ("科技", "物流", "医药", "食品", "电子", "传媒")
WORK_HEADS = ("风", "雪", "春", "夜", "山", "海", "星", "梦")
WORK_TAILS = ("之歌", "归途", "往事", "来信", "迷城", "彼岸")

# relation: (clause templates over {s} subject and {o} object, subject kind, object kind)
RELATIONS: dict[str, tuple[tuple[str, ...], str, str]] = {
    "出生地": (("{s}出生于{o}", "{s}生于{o}"), "person", "city"),
    "毕业院校": (("{s}毕业于{o}", "{s}本科就读于{o}"), "person", "university"),
    "创始人": (("{s}由{o}创立", "{s}的创始人是{o}"), "company", "person"),
    "总部地点": (("{s}总部位于{o}", "{s}的总部设在{o}"), "company", "city"),
    "导演": (("电影《{s}》由{o}执导", "《{s}》的导演是{o}"), "work", "person"),
    "作者": (("小说《{s}》的作者是{o}", "《{s}》一书由{o}创作"), "work", "person"),
    "妻子": (("{s}的妻子是{o}", "{s}和妻子{o}结婚多年"), "person", "person"),
}

SPO_INSTRUCTIONS = (
    "从下面的句子中抽取所有三元组，以JSON列表输出，每个元素包含subject、predicate、object。关系类型包括：{relations}。",
    "请找出句子中的实体关系，输出JSON格式的三元组列表（subject、predicate、object）。可选关系：{relations}。",
)


def _entity(rng: random.Random, kind: str) -> str:
    if kind == "person":
        return rng.choice(SURNAMES) + rng.choice(GIVEN_NAMES)
    if kind == "city":
        return rng.choice(CITIES)
    if kind == "university":
        return rng.choice(UNIVERSITIES)
    if kind == "company":
        return rng.choice(COMPANY_HEADS) + rng.choice(COMPANY_TRADES) + "公司"
    return rng.choice(WORK_HEADS) + rng.choice(WORK_TAILS)


def make_spo(rng: random.Random, rows: int) -> list[dict]:
    """Sentences of one to three facts, each answered by the JSON list of its triples."""
    relation_names = "、".join(RELATIONS)
    records = []
    for _ in range(rows):
        clauses = []
        triples = []
        for relation in rng.sample(sorted(RELATIONS), rng.choice((1, 2, 2, 3))):
            templates, subject_kind, object_kind = RELATIONS[relation]
            subject, obj = _entity(rng, subject_kind), _entity(rng, object_kind)
            clauses.append(rng.choice(templates).format(s=subject, o=obj))
            triples.append({"subject": subject, "predicate": relation, "object": obj})
        records.append({
            "instruction": rng.choice(SPO_INSTRUCTIONS).format(relations=relation_names),
            "input": "，".join(clauses) + "。",
            "output": json.dumps(triples, ensure_ascii=False),
        })
    return records


ALPACA_COLUMNS = {"prompt": "instruction", "query": "input", "response": "output",
                  "system": "system", "history": "history"}
SHAREGPT_TAGS = {"role_tag": "from", "content_tag": "value", "user_tag": "human", "assistant_tag": "gpt"}

DATASET_INFO: dict[str, dict] = {
    "demo_yiliao": {"file_name": "demo_yiliao.json", "formatting": "alpaca", "columns": ALPACA_COLUMNS},
    "demo_yiliao_sharegpt": {"file_name": "demo_yiliao_sharegpt.json", "formatting": "sharegpt",
                             "columns": {"messages": "conversations", "system": "system"}, "tags": SHAREGPT_TAGS},
    "demo_cate": {"file_name": "demo_cate.json", "formatting": "alpaca",
                  "columns": {"prompt": "instruction", "query": "input", "response": "output"}},
    "demo_spo": {"file_name": "demo_spo.json", "formatting": "alpaca",
                 "columns": {"prompt": "instruction", "query": "input", "response": "output"}},
}


def build_demo_datasets(seed: int = DEMO_SEED) -> dict[str, list[dict]]:
    """All demo datasets by their dataset_info name; each dataset draws from its own seeded generator,
    so changing one generator leaves the others' rows unchanged."""
    return {
        "demo_yiliao": make_yiliao_alpaca(random.Random(f"{seed}-yiliao"), YILIAO_ROWS),
        "demo_yiliao_sharegpt": make_yiliao_sharegpt(random.Random(f"{seed}-sharegpt"), YILIAO_SHAREGPT_ROWS),
        "demo_cate": make_cate(random.Random(f"{seed}-cate"), CATE_ROWS),
        "demo_spo": make_spo(random.Random(f"{seed}-spo"), SPO_ROWS),
    }


def dump_records(records: list[dict]) -> str:
    """A JSON list with one record per line: valid for json.load and datasets, small, and diff-friendly."""
    lines = ",\n".join(json.dumps(record, ensure_ascii=False) for record in records)
    return f"[\n{lines}\n]\n"


def write_demo_data(out_dir: str | Path, seed: int = DEMO_SEED) -> list[Path]:
    """Write every demo dataset and its dataset_info.json into `out_dir`; returns the files written."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, records in build_demo_datasets(seed).items():
        path = out_dir / DATASET_INFO[name]["file_name"]
        path.write_text(dump_records(records), encoding="utf-8")
        written.append(path)
    info_path = out_dir / "dataset_info.json"
    info_path.write_text(json.dumps(DATASET_INFO, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    written.append(info_path)
    return written


def main(argv: list[str]) -> None:
    if len(argv) != 1:
        raise SystemExit("usage: python -m sft.data.demo_data OUT_DIR   (e.g. python -m sft.data.demo_data data/)")
    for path in write_demo_data(argv[0]):
        print(f"{path}  {path.stat().st_size:,} bytes")


if __name__ == "__main__":
    main(sys.argv[1:])
